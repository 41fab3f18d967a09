"""Real tokens of a padded batch as one [N, ...] tensor, and back.

Position-wise work (projections, feed-forward, LayerNorm, dropout, output map) on padding is
wasted: QF training batches are about a quarter padding. A `Packing` lets those layers run on the
N real tokens only, while attention, which needs the [B, T] layout, unpacks around itself.

This saves 20–25% of a CPU training step of the paper configuration (`python bench/fast_paths.py
--threads 1`). Evaluation batches, sorted by length, carry little padding: nothing measurable.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Packing:
    """Flat indices (into B·T) of the real tokens, in row-major order."""

    index: torch.Tensor
    batch: int
    time: int

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor, T: int) -> "Packing":
        """Real tokens are the first lengths[b] positions of row b."""
        real = torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]
        return cls(real.flatten().nonzero().squeeze(1), lengths.shape[0], T)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, ...] → [N, ...]."""
        return x.reshape(self.batch * self.time, *x.shape[2:]).index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """[N, ...] → [B, T, ...], zeros at the padded positions."""
        full = x.new_zeros(self.batch * self.time, *x.shape[1:]).index_copy(0, self.index, x)
        return full.view(self.batch, self.time, *x.shape[1:])
