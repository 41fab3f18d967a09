"""Words <-> ids. Ids follow the research code: `<pad>` = 0, then the sorted word list."""
from __future__ import annotations

from typing import Iterable

from util import HierGenError

PAD = "<pad>"


class WordVocabulary:
    """A fixed word list; the model adds EOS = len(vocab) and SOS = len(vocab) + 1."""

    def __init__(self, words: Iterable[str]):
        self.words = [PAD] + sorted(set(words) - {PAD})
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @property
    def eos(self) -> int:
        return len(self.words)

    @property
    def sos(self) -> int:
        return len(self.words) + 1

    def ids(self, words: Iterable[str]) -> list[int]:
        try:
            return [self.index[w] for w in words]
        except KeyError as e:
            raise HierGenError(f"unknown word {e.args[0]!r}") from None
