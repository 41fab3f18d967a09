"""Sinusoidal positional encoding table."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class PositionalEncoding(nn.Module):
    """Fixed table `pe` [1, max_len, d]: sin on even dims, cos on odd dims, base 10000.

    `pe` is a saved buffer because research checkpoints carry it (as `pos.pe`).
    """

    def __init__(self, d_model: int, max_len: int = 5000):
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(max_len, d_model).unsqueeze(0))

    def forward(self, length: int) -> torch.Tensor:
        """The encodings of positions 0 .. length-1, shaped [1, length, d]."""
        if length > self.pe.shape[1]:
            raise ValueError(f"{length} positions requested, only {self.pe.shape[1]} encoded")
        return self.pe[:, :length]


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """[max_len, d_model]: sin(p / 10000^(2i/d)) at dim 2i, cos at dim 2i+1."""
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    even_dims = torch.arange(0, d_model, 2, dtype=torch.float32)
    inv_freq = torch.exp(even_dims * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: d_model // 2])
    return table
