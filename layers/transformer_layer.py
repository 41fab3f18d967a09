"""Post-LayerNorm transformer layer and a stack of them."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from layers.attention import MultiHeadAttention


class TransformerEncoderLayer(nn.Module):
    """`x = LN1(x + Drop(Attn(x)))`, then `x = LN2(x + Drop(W2 Drop(ReLU(W1 x + b1)) + b2))`."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.self_attn.reset_parameters()
        # Biases keep PyTorch's default init; only the weights follow the research scheme.
        self.linear1.reset_parameters()
        self.linear2.reset_parameters()
        nn.init.xavier_uniform_(self.linear1.weight, gain=math.sqrt(2.0))
        nn.init.xavier_uniform_(self.linear2.weight)
        self.norm1.reset_parameters()
        self.norm2.reset_parameters()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attn(x, attn_mask)))
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout(ff))


class TransformerEncoder(nn.Module):
    """A stack of post-LN layers without a final LayerNorm."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, attn_mask)
        return x
