"""Words <-> ids. Ids follow the research code: `<pad>` = 0, then the sorted word list."""
from __future__ import annotations

from typing import Iterable, Sequence

from util import HierGenError

PAD = "<pad>"


class WordVocabulary:
    """A fixed word list; the model adds EOS = len(vocab) and SOS = len(vocab) + 1."""

    def __init__(self, words: Iterable[str]):
        self.words = [PAD] + sorted(set(words) - {PAD})
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_list(cls, index_to_word: Sequence[str]) -> "WordVocabulary":
        """Rebuild a vocabulary saved as its index -> word list (e.g. from a checkpoint)."""
        vocab = cls(index_to_word)
        if vocab.words != list(index_to_word):
            raise HierGenError("saved vocabulary is not '<pad>' followed by sorted words")
        return vocab

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

    def to_words(self, ids: Iterable[int]) -> list[str]:
        names = self.words + ["<eos>", "<sos>"]
        return [names[i] for i in ids]
