"""Example -> model sequence: `[SOS] input . marker output [EOS]` as ids, plus the eval target."""
from __future__ import annotations

from dataclasses import dataclass

from data_utils.example import Example
from vocabulary import WordVocabulary


@dataclass(frozen=True)
class Sequence:
    """One encoded line.

    The model reads `tokens[:-1]` and is trained to predict `tokens[1:]`; the logits at input
    position t predict `tokens[t + 1]`. Target positions `t <= prefix_len` form the first half
    (input words and the marker), the rest the second half (output words and EOS).
    `eval_pos` is the input position whose logits decide the task accuracy (-1: none).
    """

    tokens: tuple[int, ...]
    prefix_len: int
    eval_pos: int = -1
    gold: int = -1
    candidates: tuple[int, ...] | None = None
    answers: tuple[tuple[str, int], ...] = ()
    type_tag: str | None = None


def encode(example: Example, vocab: WordVocabulary) -> Sequence:
    tokens = (vocab.sos, *vocab.ids(example.words), vocab.eos)
    target = example.target
    if target is None:
        return Sequence(tokens, example.prefix_len, type_tag=example.type_tag)
    # Input position of the marker is prefix_len + 1 (SOS at 0); output word k follows it.
    eval_pos = example.prefix_len + 1 + target.out_index
    candidates = None if target.candidates is None else tuple(vocab.ids(target.candidates))
    answers = tuple((rule, vocab.ids([word])[0]) for rule, word in target.answers)
    return Sequence(tokens, example.prefix_len, eval_pos, vocab.ids([target.gold])[0],
                    candidates, answers, example.type_tag)
