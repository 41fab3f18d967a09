"""Output layer that reuses the input embedding matrix and has its own bias."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class TiedOutputMap(nn.Module):
    """`logits = h Eᵀ + b`; only the bias is owned here, so E is saved once (as the embedding)."""

    def __init__(self, n_tokens: int):
        super().__init__()
        self.bias = nn.Parameter(torch.empty(n_tokens))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, embedding_weight, self.bias)
