"""Question formation (QF): sampling, the transformation, validation, routing, filters, eval target.

`decl` copies the declarative; `quest` fronts the main auxiliary (the first auxiliary after the
subject NP). Generalization lines are quests whose subject has a relative clause, so the first
auxiliary of the input (linear rule) and the main one (hierarchical rule) differ.
"""
from __future__ import annotations

import itertools
import random
from functools import lru_cache

from data_utils.example import EvalTarget, Example
from data_utils.grammar import RC_KINDS, BadLine, Frame, Grammar, load_cfg, noun_table
from data_utils.lines import read_text_lines
from data_utils.stream import fill_splits
from util import HierGenError

CFG = load_cfg("question")
LEX = load_cfg("lexicon")
MARKERS = tuple(CFG["markers"])
AUXILIARIES = ("do", "does", "don't", "doesn't")  # the candidates of the main-auxiliary accuracy
GRAMMAR = Grammar(("aux", "vi"), ("aux", "vt"), {
    **noun_table(),
    ("aux", "s"): LEX["aux"]["s"], ("aux", "p"): LEX["aux"]["p"],
    ("vi", None): [v[0] for v in LEX["verb_intrans"]], ("vt", None): [v[0] for v in LEX["verb_trans"]],
})


def vocabulary_words() -> list[str]:
    """Every word a QF line can hold (68 words; the vocabulary adds <pad>)."""
    return [w for words in GRAMMAR.table.values() for w in words] + [".", "?", *MARKERS]


def transform(source: tuple[str, ...], frame: Frame, marker: str) -> tuple[str, ...]:
    """The output for an input ending in '.': identity for decl, main auxiliary fronted for quest."""
    if marker == "decl":
        return source
    j = frame.main
    return (source[j],) + source[:j] + source[j + 1:-1] + ("?",)


@lru_cache(maxsize=None)
def type_tag(frame: Frame, numbers: tuple[str, ...], marker: str) -> str:
    """`<input tags> marker<TAB><output tags>`, the format of question.test.type."""
    tags = tuple(GRAMMAR.tags(frame, numbers, CFG["tags"]))
    out = transform(tags + (".",), frame, marker)[:-1]
    return f"{' '.join(tags)} {marker}\t{' '.join(out)}"


def is_gen(frame: Frame, source: tuple[str, ...]) -> bool:
    """Generalization acceptance: exactly 2 auxiliaries, same number, opposite polarity."""
    if len(frame.agree) != 2:
        return False
    a, b = (source[slot] for slot, _ in frame.agree)
    return GRAMMAR.word_info[a] == GRAMMAR.word_info[b] and a.endswith("n't") != b.endswith("n't")


def route(frame: Frame, source: tuple[str, ...], marker: str) -> str | None:
    """Pool of a line: "iid", "gen_src"/"gen_orc" for accepted generalization quests, None to drop."""
    if marker == "decl" or frame.subject not in RC_KINDS:
        return "iid"
    if not is_gen(frame, source):
        return None
    return "gen_orc" if frame.subject == "orc" else "gen_src"


def render(frame: Frame, words: list[str], marker: str) -> tuple[str | None, str, str]:
    """A stream draw (pool, dedup key, text) for sampled words; QF dedups on the whole line."""
    source = tuple(words) + (".",)
    text = f"{' '.join(source)} {marker}\t{' '.join(transform(source, frame, marker))}"
    return route(frame, source, marker), text, text


def _draw(rng: random.Random, shares: dict, marker: str | None = None) -> tuple[str | None, str, str]:
    frame, numbers = GRAMMAR.sample(rng, shares)
    words = GRAMMAR.realize(rng, frame, numbers)
    return render(frame, words, marker or rng.choice(MARKERS))


def _gen_quotas(split: str) -> dict:
    caps = CFG["gen_caps"]
    return {"gen_src": [(split, caps["src"])], "gen_orc": [(split, caps["orc"])]}


def generate_standard(seed: int) -> dict[str, list[str]]:
    """question.{train,val,test,test.type}: iid lines fill train then val, then the gen set."""
    rng, seen, sizes = random.Random(f"question:{seed}"), set(), CFG["sizes"]
    iid = fill_splits(lambda: _draw(rng, CFG["shares"]["iid"]),
                      {"iid": [("train", sizes["train"]), ("val", sizes["val"])]}, seen)
    gen = fill_splits(lambda: _draw(rng, CFG["shares"]["gen"], "quest"), _gen_quotas("test"), seen)
    types = [type_tag(*GRAMMAR.parse_text(line)) for line in gen["test"]]
    return {"question.train": iid["train"], "question.val": iid["val"],
            "question.test": gen["test"], "question.test.type": types}


def iid_types() -> list[tuple[Frame, tuple[str, ...], str]]:
    """The 374 (tag sequence, marker) types of the iid grammar, in a fixed order."""
    types = [(frame, numbers, marker)
             for frame in GRAMMAR.frames.values()
             for numbers in itertools.product("sp", repeat=len(frame.nouns))
             for marker in MARKERS
             if marker == "decl" or frame.subject not in RC_KINDS]
    return sorted(types, key=lambda t: type_tag(*t))


def generate_diversity(seed: int, n_types: int, draw_name: str) -> dict[str, list[str]]:
    """question.{train,val} drawn from `n_types` random iid types (uniform), words uniform per slot."""
    rng, sizes = random.Random(f"{draw_name}:{seed}"), CFG["sizes"]
    chosen = rng.sample(iid_types(), n_types)

    def draw():
        frame, numbers, marker = rng.choice(chosen)
        return render(frame, GRAMMAR.realize(rng, frame, numbers), marker)

    iid = fill_splits(draw, {"iid": [("train", sizes["train"]), ("val", sizes["val"])]}, set())
    return {"question.train": iid["train"], "question.val": iid["val"]}


def generate_disamb(seed: int, test_lines: list[str]) -> dict[str, list[str]]:
    """question.disamb: a pool of gen-type quests (same acceptance and 2:1 mix), none in the test set."""
    rng, size = random.Random(f"qf_disamb:{seed}"), CFG["disamb_pool"]
    caps = CFG["gen_caps"]
    n_src = round(size * caps["src"] / (caps["src"] + caps["orc"]))
    quotas = {"gen_src": [("disamb", n_src)], "gen_orc": [("disamb", size - n_src)]}
    pool = fill_splits(lambda: _draw(rng, CFG["shares"]["gen"], "quest"), quotas, set(test_lines))
    return {"question.disamb": pool["disamb"]}


def parse_line(source: tuple[str, ...], marker: str, output: tuple[str, ...]) -> Example:
    """Validate one QF line and attach its eval target (quests only) and metadata."""
    if marker not in MARKERS:
        raise BadLine(f"unknown marker {marker!r} (QF markers: {', '.join(MARKERS)})")
    frame, numbers = GRAMMAR.parse(source[:-1])
    expected = transform(source, frame, marker)
    if output != expected:
        raise BadLine(f"output is not the {marker} form of the input (expected {' '.join(expected)!r})")
    main, first = frame.main, frame.agree[0][0]
    target = None
    if marker == "quest":
        answers = () if source[first] == source[main] else (("hierarchical", source[main]), ("linear", source[first]))
        target = EvalTarget(0, output[0], AUXILIARIES, answers)
    meta = {"subject": frame.subject, "main": main, "n_aux": len(frame.agree)}
    return Example(source, marker, output, target, type_tag(frame, numbers, marker), meta)


def check_type_file(path: str, examples: list[Example]) -> None:
    """question.test.type must hold one line per test line, equal to that line's tags."""
    lines = read_text_lines(path)
    if len(lines) != len(examples):
        raise HierGenError(f"{path}: {len(lines)} lines for {len(examples)} test lines")
    for number, (line, example) in enumerate(zip(lines, examples), 1):
        if line != example.type_tag:
            raise HierGenError(f"{path}:{number}: type {line!r} does not match the test line (expected {example.type_tag!r})")


def _is_quest(e: Example) -> bool:
    return e.marker == "quest"


# The training filters: flag -> which lines it keeps.
FILTERS = {
    "exclude_identity": _is_quest,
    "train_on_decl_only": lambda e: e.marker == "decl",
    "pretrain": lambda e: e.marker == "decl" or e.meta["n_aux"] == 1,
    "train_on_compl_only": lambda e: e.meta["n_aux"] >= 2,
    "train_on_simple_only": lambda e: e.meta["n_aux"] < 2,
    "train_on_hier_only": lambda e: _is_quest(e) or e.meta["subject"] == "orc",
    "train_on_linear_only": lambda e: _is_quest(e) or e.meta["subject"] in ("src_i", "src_t"),
    "exclude_complex_decls": lambda e: _is_quest(e) or e.meta["n_aux"] == 1,
    "exclude_simple_decls": lambda e: _is_quest(e) or e.meta["n_aux"] == 2,
    "exclude_middle_decls": lambda e: _is_quest(e) or e.meta["n_aux"] > 2,
    "exclude_complex_quest": lambda e: not _is_quest(e) or e.meta["n_aux"] < 2,
    "exclude_simple_quest": lambda e: not _is_quest(e) or e.meta["n_aux"] >= 2,
}


def specified_decls(counts: set[int]):
    """The `--use_specified_decls` filter: all quests + decls whose auxiliary count is in `counts`."""
    return lambda e: _is_quest(e) or e.meta["n_aux"] in counts


def filter_train(examples: list[Example], keeps: list) -> list[Example]:
    """Lines every active filter keeps (the intersection), in file order."""
    return [e for e in examples if all(keep(e) for keep in keeps)]
