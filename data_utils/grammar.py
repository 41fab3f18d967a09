"""The sentence grammar shared by both tasks: cfgs/ files, sentence frames, sampling and parsing.

A sentence is `subject NP + verb group [+ object NP] + .`. Question formation spells a verb group
as `aux verb`, tense inflection as a single past verb; everything else is the same. A *frame* is
one structure (subject kind, VP kind) spelled as word categories; the 30 frames of a task are
compiled once and looked up by category sequence, so parsing a line is a dictionary lookup.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CFGS = Path(__file__).resolve().parents[1] / "cfgs"
NP_KINDS = ("bare", "pp", "src_i", "src_t", "orc")
VP_KINDS = ("intrans",) + NP_KINDS  # "intrans" or the kind of the object NP
RC_KINDS = ("src_i", "src_t", "orc")


class BadLine(ValueError):
    """A data line that breaks the grammar; the reader adds `file:line`."""


@lru_cache(maxsize=None)
def load_cfg(name: str) -> dict:
    """The parsed JSON file cfgs/{name}.json."""
    return json.loads((CFGS / f"{name}.json").read_text())


@dataclass(frozen=True)
class Frame:
    """One sentence structure as word categories (det n prep rel aux vi vt), without the '.'.

    `agree` pairs each agreeing slot (QF: auxiliary, TI: verb) with the position of the noun that
    controls it; `main` is the first slot of the main verb group, `verb` its verb.
    """

    subject: str
    vp: str
    cats: tuple[str, ...]
    nouns: tuple[int, ...]
    agree: tuple[tuple[int, int], ...]
    main: int
    verb: int


def _np(kind: str, start: int, group_i: tuple, group_t: tuple) -> tuple[list, list]:
    """Categories of an NP starting at `start`, and its (agreeing slot, controller) pairs."""
    head = start + 1
    if kind == "bare":
        return ["det", "n"], []
    if kind == "pp":
        return ["det", "n", "prep", "det", "n"], []
    if kind == "src_i":
        return ["det", "n", "rel", *group_i], [(start + 3, head)]
    if kind == "src_t":
        return ["det", "n", "rel", *group_t, "det", "n"], [(start + 3, head)]
    # Object relative: the RC verb agrees with the RC-internal subject.
    return ["det", "n", "rel", "det", "n", *group_t], [(start + 5, start + 4)]


def build_frames(group_i: tuple[str, ...], group_t: tuple[str, ...]) -> dict[tuple, Frame]:
    """All frames of a task keyed by category sequence; the first slot of a verb group agrees."""
    frames = {}
    for subject in NP_KINDS:
        cats, agree = _np(subject, 0, group_i, group_t)
        main = len(cats)
        for vp in VP_KINDS:
            group = group_i if vp == "intrans" else group_t
            obj_cats, obj_agree = ([], []) if vp == "intrans" else _np(vp, main + len(group), group_i, group_t)
            all_cats = tuple(cats + list(group) + obj_cats)
            frame = Frame(subject, vp, all_cats,
                          nouns=tuple(i for i, c in enumerate(all_cats) if c == "n"),
                          agree=tuple(agree + [(main, 1)] + obj_agree),
                          main=main, verb=main + len(group) - 1)
            assert all_cats not in frames, "two structures share a category sequence"
            frames[all_cats] = frame
    return frames


def choose(rng: random.Random, shares: dict[str, float]) -> str:
    """One key of `shares`, drawn with probability proportional to its value."""
    return rng.choices(list(shares), weights=list(shares.values()))[0]


class Grammar:
    """A task's frames plus its word table: (category, number) -> words, and word -> (category, number)."""

    def __init__(self, group_i: tuple[str, ...], group_t: tuple[str, ...], table: dict[tuple, list[str]]):
        self.frames = build_frames(group_i, group_t)
        self.by_kind = {(f.subject, f.vp): f for f in self.frames.values()}
        self.table = table
        self.word_info = {w: key for key, words in table.items() for w in words}

    def sample(self, rng: random.Random, shares: dict) -> tuple[Frame, tuple[str, ...]]:
        """A frame drawn from `shares` ({"subject": .., "vp": ..}) and a fair coin per noun number."""
        frame = self.by_kind[choose(rng, shares["subject"]), choose(rng, shares["vp"])]
        return frame, tuple(rng.choice("sp") for _ in frame.nouns)

    def slot_numbers(self, frame: Frame, numbers: tuple[str, ...]) -> list[str | None]:
        """Number of every slot: nouns their own, agreeing slots their controller's, others None."""
        slots: list[str | None] = [None] * len(frame.cats)
        for pos, num in zip(frame.nouns, numbers):
            slots[pos] = num
        for slot, controller in frame.agree:
            slots[slot] = slots[controller]
        return slots

    def realize(self, rng: random.Random, frame: Frame, numbers: tuple[str, ...]) -> list[str]:
        """Words for a frame, uniform within each slot's word list.

        Categories whose words do not change with number (TI past verbs) are keyed (cat, None).
        """
        table = self.table
        return [rng.choice(table.get((cat, num)) or table[cat, None])
                for cat, num in zip(frame.cats, self.slot_numbers(frame, numbers))]

    def parse(self, words: tuple[str, ...]) -> tuple[Frame, tuple[str, ...]]:
        """Frame and noun numbers of a sentence without its '.'; raises BadLine when ungrammatical."""
        try:
            info = [self.word_info[w] for w in words]
        except KeyError as e:
            raise BadLine(f"unknown word {e.args[0]!r} in the input") from None
        frame = self.frames.get(tuple(cat for cat, _ in info))
        if frame is None:
            raise BadLine("ungrammatical word order: " + " ".join(cat for cat, _ in info))
        for slot, controller in frame.agree:
            number = info[slot][1]
            if number is not None and number != info[controller][1]:
                raise BadLine(f"{words[slot]!r} does not agree with {words[controller]!r}")
        return frame, tuple(info[pos][1] for pos in frame.nouns)

    def parse_text(self, line: str) -> tuple[Frame, tuple[str, ...], str]:
        """Frame, noun numbers and marker of a line this code generated (so known to be valid)."""
        source = line.split("\t")[0].split(" ")
        return (*self.parse(tuple(source[:-2])), source[-1])

    def tags(self, frame: Frame, numbers: tuple[str, ...], names: dict[str, str]) -> list[str]:
        """Tag of every slot, from templates like "n_{num}"."""
        return [names[cat].format(num=num) for cat, num in zip(frame.cats, self.slot_numbers(frame, numbers))]


def noun_table() -> dict[tuple, list[str]]:
    """Word lists of the categories both tasks share."""
    lex = load_cfg("lexicon")
    return {("det", None): lex["det"], ("n", "s"): lex["noun"]["s"], ("n", "p"): lex["noun"]["p"],
            ("prep", None): lex["prep"], ("rel", None): lex["rel"]}
