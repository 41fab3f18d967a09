"""The encoder and decoder tensors of the non-LM families, cut from an LM batch on its device.

An LM batch row is `[SOS] w_1 .. w_P marker o_1 .. o_K` (inputs) with targets shifted by one
(`o_K` followed by EOS); P = prefix_len, and the row's length is P + K + 2.
"""
from __future__ import annotations

import torch

from collate import IGNORE, Batch


def source_view(batch: Batch, with_sos: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`[SOS] input . marker` (with_sos) or `input . marker`, padded with 0; and the lengths."""
    start = torch.zeros_like(batch.prefix_len) if with_sos else torch.ones_like(batch.prefix_len)
    lengths = batch.prefix_len + 2 - start
    return row_windows(batch.inputs, start, lengths, fill=0), lengths


def decoder_view(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder inputs `[SOS] output` (padded with 0), targets `output EOS` (padded with IGNORE),
    and their lengths K + 1."""
    start = batch.prefix_len + 1  # the marker's input position; its target is o_1
    lengths = batch.lengths - start
    targets = row_windows(batch.targets, start, lengths, fill=IGNORE)
    inputs = row_windows(batch.inputs, start, lengths, fill=0)
    inputs[:, 0] = batch.inputs[:, 0]  # SOS in place of the marker
    return inputs, targets, lengths


def decoder_eval_pos(batch: Batch) -> torch.Tensor:
    """The decoder position whose logits decide the task (output word index; -1 where none)."""
    return torch.where(batch.eval_pos >= 0, batch.eval_pos - batch.prefix_len - 1, -1)


def row_windows(x: torch.Tensor, start: torch.Tensor, lengths: torch.Tensor,
                fill: int) -> torch.Tensor:
    """[B, max(lengths)]: row b holds x[b, start[b] : start[b] + lengths[b]], then `fill`."""
    offsets = torch.arange(int(lengths.max()), device=x.device)
    index = (start[:, None] + offsets[None, :]).clamp(max=x.shape[1] - 1)
    inside = offsets[None, :] < lengths[:, None]
    return x.gather(1, index).masked_fill(~inside, fill)
