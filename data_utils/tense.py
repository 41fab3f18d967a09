"""Tense inflection (TI): sampling, the transformation, validation, routing, filters, eval target.

`PAST` copies the past-tense sentence; `PRESENT` puts every verb in the present, agreeing with its
controller. Generalization lines have an agreement attractor: the noun nearest before the main
verb differs in number from the subject, so agreeing with the subject (hierarchical) and with the
most recent noun (linear) give different main verbs.
"""
from __future__ import annotations

import random
from functools import lru_cache

from data_utils.example import EvalTarget, Example
from data_utils.grammar import BadLine, Frame, Grammar, load_cfg, noun_table
from data_utils.stream import fill_splits
from util import HierGenError

CFG = load_cfg("tense")
LEX = load_cfg("lexicon")
MARKERS = tuple(CFG["markers"])
VERBS = LEX["verb_intrans"] + LEX["verb_trans"]
PRESENT = {(past, num): form for base, s, past in VERBS for num, form in (("p", base), ("s", s))}
GRAMMAR = Grammar(("vi",), ("vt",), {
    **noun_table(),
    ("vi", None): [v[2] for v in LEX["verb_intrans"]], ("vt", None): [v[2] for v in LEX["verb_trans"]],
})
SUBSPLITS = ("rc", "prep", "rc_sbj", "rc_obj")
# Subject kind of the training filters, read off input tag[2].
SUBJECT_KIND = {"bare": "v", "pp": "simple", "src_i": "rc", "src_t": "rc", "orc": "rc"}
MIX_KIND = {"bare": "v", "pp": "prep", "src_i": "rc", "src_t": "rc", "orc": "rc"}  # tense_D{k} presets


def vocabulary_words() -> list[str]:
    """Every word a TI line can hold, plus decl/quest which the research vocabulary always had."""
    verbs = [form for verb in VERBS for form in verb]
    return [w for words in noun_table().values() for w in words] + verbs + [".", *MARKERS, "decl", "quest"]


def transform(source: tuple[str, ...], frame: Frame, numbers: tuple[str, ...], marker: str) -> tuple[str, ...]:
    """The output for an input ending in '.': identity for PAST, present-tense verbs for PRESENT."""
    if marker == "PAST":
        return source
    slots = GRAMMAR.slot_numbers(frame, numbers)
    out = list(source)
    for slot, _ in frame.agree:
        out[slot] = PRESENT[source[slot], slots[slot]]
    return tuple(out)


def recent_noun(frame: Frame) -> int:
    """Index (among the nouns) of the noun nearest before the main verb."""
    return max(i for i, pos in enumerate(frame.nouns) if pos < frame.verb)


def has_attractor(frame: Frame, numbers: tuple[str, ...]) -> bool:
    return numbers[recent_noun(frame)] != numbers[0]


def subsplit(frame: Frame) -> str:
    """Typed sub-split of a PRESENT line by input tag[2]: rc_sbj, rc_obj or prep."""
    return {"src_i": "rc_sbj", "src_t": "rc_sbj", "orc": "rc_obj"}.get(frame.subject, "prep")


@lru_cache(maxsize=None)
def type_tag(frame: Frame, numbers: tuple[str, ...], marker: str) -> str:
    """`<input tags> marker<TAB><output tags>`, as question.test.type for QF."""
    tags = GRAMMAR.tags(frame, numbers, CFG["tags"]["PAST"])
    out = GRAMMAR.tags(frame, numbers, CFG["tags"][marker])
    return f"{' '.join(tags)} {marker}\t{' '.join(out)}"


def _sample(rng: random.Random, shares: dict, marker: str) -> tuple[Frame, tuple[str, ...], str, str]:
    """A sampled line's frame, noun numbers, sentence (the TI dedup key) and text."""
    frame, numbers = GRAMMAR.sample(rng, shares)
    source = tuple(GRAMMAR.realize(rng, frame, numbers)) + (".",)
    output = transform(source, frame, numbers, marker)
    sentence = " ".join(source)
    return frame, numbers, sentence, f"{sentence} {marker}\t{' '.join(output)}"


def _subsplit_files(prefix: str, lines: list[str]) -> dict[str, list[str]]:
    """tense.{prefix}_{rc,prep,rc_sbj,rc_obj}: PRESENT lines by subject kind, tab replaced by a space."""
    files = {f"tense.{prefix}_{name}": [] for name in SUBSPLITS}
    for line in lines:
        frame, _, marker = GRAMMAR.parse_text(line)
        if marker == "PRESENT":
            kind = subsplit(frame)
            files[f"tense.{prefix}_{kind}"].append(line.replace("\t", " "))
            if kind != "prep":
                files[f"tense.{prefix}_rc"].append(line.replace("\t", " "))
    return files


def generate_standard(seed: int) -> dict[str, list[str]]:
    """tense.{train,val,test} and typed sub-splits; one stream routed to iid (train, val) and gen (test)."""
    rng, sizes = random.Random(f"tense:{seed}"), CFG["sizes"]

    def draw():
        marker = rng.choice(MARKERS)
        frame, numbers, sentence, text = _sample(rng, CFG["shares"], marker)
        return "gen" if marker == "PRESENT" and has_attractor(frame, numbers) else "iid", sentence, text

    quotas = {"iid": [("train", sizes["train"]), ("val", sizes["val"])], "gen": [("test", sizes["test"])]}
    split = fill_splits(draw, quotas, set())
    return {"tense.train": split["train"], "tense.val": split["val"], "tense.test": split["test"],
            **_subsplit_files("val", split["val"]), **_subsplit_files("test", split["test"])}


def _shares(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split `total` into integer counts proportional to `shares` (the last takes the remainder)."""
    counts = {k: round(total * v / sum(shares.values())) for k, v in shares.items()}
    last = list(shares)[-1]
    counts[last] = total - sum(v for k, v in counts.items() if k != last)
    return counts


def generate_mix(seed: int, name: str) -> dict[str, list[str]]:
    """tense.{train,val} + val sub-splits of a `tense_D{k}` preset: exact PAST / PRESENT-kind counts.

    PRESENT lines never carry an attractor (those are the generalization set); the RC subjects
    split into subject/object relatives by the preset's `rc_obj` share or the grammar's own ratio.
    """
    mix, rng, sizes = CFG["mixes"][name], random.Random(f"{name}:{seed}"), CFG["sizes"]
    grammar = CFG["shares"]["subject"]
    rc_obj = mix.get("rc_obj", grammar["orc"] / (grammar["src_i"] + grammar["src_t"] + grammar["orc"]))
    src = grammar["src_i"] + grammar["src_t"]
    rc = mix["subject"]["rc"]
    present = {"subject": {"bare": mix["subject"]["v"], "pp": mix["subject"]["prep"],
                           "src_i": rc * (1 - rc_obj) * grammar["src_i"] / src,
                           "src_t": rc * (1 - rc_obj) * grammar["src_t"] / src, "orc": rc * rc_obj},
               "vp": CFG["shares"]["vp"]}
    pools = {"PAST": mix["PAST"], **{kind: (1 - mix["PAST"]) * share for kind, share in mix["subject"].items()}}

    def draw():
        marker = "PAST" if rng.random() < mix["PAST"] else "PRESENT"
        frame, numbers, sentence, text = _sample(rng, CFG["shares"] if marker == "PAST" else present, marker)
        if marker == "PAST":
            return "PAST", sentence, text
        return None if has_attractor(frame, numbers) else MIX_KIND[frame.subject], sentence, text

    train, val = _shares(sizes["train"], pools), _shares(sizes["val"], pools)
    split = fill_splits(draw, {pool: [("train", train[pool]), ("val", val[pool])] for pool in pools}, set())
    return {"tense.train": split["train"], "tense.val": split["val"], **_subsplit_files("val", split["val"])}


def parse_line(source: tuple[str, ...], marker: str, output: tuple[str, ...]) -> Example:
    """Validate one TI line and attach its eval target (PRESENT only) and metadata."""
    if marker not in MARKERS:
        raise BadLine(f"unknown marker {marker!r} (TI markers: {', '.join(MARKERS)})")
    frame, numbers = GRAMMAR.parse(source[:-1])
    expected = transform(source, frame, numbers, marker)
    if output != expected:
        raise BadLine(f"output is not the {marker} form of the input (expected {' '.join(expected)!r})")
    verb, target = frame.verb, None
    if marker == "PRESENT":
        recent = PRESENT[source[verb], numbers[recent_noun(frame)]]
        answers = () if recent == output[verb] else (("agree_subject", output[verb]), ("agree_recent", recent))
        target = EvalTarget(verb, output[verb], None, answers)
    meta = {"subject": frame.subject, "main": verb, "attractor": has_attractor(frame, numbers)}
    return Example(source, marker, output, target, type_tag(frame, numbers, marker), meta)


def subsplit_parser(name: str):
    """Parser for a typed sub-split file: PRESENT lines of kind `name` only."""
    def parse(source: tuple[str, ...], marker: str, output: tuple[str, ...]) -> Example:
        example = parse_line(source, marker, output)
        kind = subsplit(GRAMMAR.parse(source[:-1])[0])
        if marker != "PRESENT" or not (kind == name or (name == "rc" and kind != "prep")):
            raise BadLine(f"a {marker} line with a {kind} subject does not belong in sub-split {name}")
        return example
    return parse


# The training filters: flag -> (marker it restricts, subject kinds kept).
FILTERS = {
    "include_past_simple": ("PAST", {"simple"}),
    "include_past_simple_verb": ("PAST", {"simple", "v"}),
    "include_past_complex": ("PAST", {"rc"}),
    "include_past_complex_verb": ("PAST", {"rc", "v"}),
    "include_present_simple": ("PRESENT", {"simple"}),
    "include_present_simple_verb": ("PRESENT", {"simple", "v"}),
    "include_present_complex": ("PRESENT", {"rc"}),
    "include_present_complex_verb": ("PRESENT", {"rc", "v"}),
}
RC_FILTERS = {"include_subject_rc_obj": "src", "include_subject_rc_subj": "orc"}  # flag -> RC kind it drops


def _keeps(flag: str, example: Example) -> bool:
    if flag == "exclude_identity":
        return example.marker == "PRESENT"
    subject = example.meta["subject"]
    if flag in RC_FILTERS:
        return example.marker == "PAST" or not subject.startswith(RC_FILTERS[flag])
    marker, kinds = FILTERS[flag]
    return example.marker != marker or SUBJECT_KIND[subject] in kinds


def filter_train(examples: list[Example], flags: list[str]) -> list[Example]:
    """Lines every flag keeps (the intersection); with a flag active, PAST lines come first."""
    if not flags:
        return examples
    kept = [e for e in examples if all(_keeps(flag, e) for flag in flags)]
    if not kept:
        raise HierGenError(f"the TI filters {', '.join(flags)} keep no training line")
    return [e for e in kept if e.marker == "PAST"] + [e for e in kept if e.marker == "PRESENT"]
