"""Post-LayerNorm transformer layers (encoder and decoder) and stacks of them."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from layers.attention import MultiHeadAttention
from layers.internals import Internals, record_state
from layers.packing import Packing


class _PostLNLayer(nn.Module):
    """The self-attention and feed-forward blocks both layer kinds share (module names as in the
    research checkpoints); subclasses call `reset_parameters` once their own modules exist."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, gated: bool):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, gated)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-5)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        self.self_attn.reset_parameters()
        # Biases keep PyTorch's default init; only the weights follow the research scheme.
        self.linear1.reset_parameters()
        self.linear2.reset_parameters()
        nn.init.xavier_uniform_(self.linear1.weight, gain=math.sqrt(2.0))
        nn.init.xavier_uniform_(self.linear2.weight)
        self.norm1.reset_parameters()
        self.norm2.reset_parameters()

    def _self_attention_block(self, x: torch.Tensor, attn_mask: torch.Tensor, packing: Packing | None,
                              internals: Internals | None) -> torch.Tensor:
        attended = self.self_attn(x, attn_mask, packing=packing, internals=internals)
        return self.norm1(x + self.dropout(attended))

    def _feed_forward_block(self, x: torch.Tensor) -> torch.Tensor:
        # in place: the ReLU overwrites the projection it reads, saving a [tokens, d_ff] buffer
        ff = self.linear2(self.dropout(F.relu(self.linear1(x), inplace=True)))
        return self.norm2(x + self.dropout(ff))


class TransformerEncoderLayer(_PostLNLayer):
    """`x = LN1(x + Drop(Attn(x)))`, then `x = LN2(x + Drop(W2 Drop(ReLU(W1 x + b1)) + b2))`."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 gated: bool = False):
        super().__init__(d_model, n_heads, d_ff, dropout, gated)
        self.reset_parameters()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, packing: Packing | None = None,
                internals: Internals | None = None) -> torch.Tensor:
        """x: [B, T, d], or [N, d] real tokens with `packing` (every block but attention is
        position-wise, so it runs on them as they are)."""
        return self._feed_forward_block(self._self_attention_block(x, attn_mask, packing, internals))


class TransformerDecoderLayer(_PostLNLayer):
    """The encoder layer with a cross-attention block between its two blocks:
    `x = LN_cross(x + Drop(CrossAttn(x, memory)))` after the (causal) self-attention."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1):
        super().__init__(d_model, n_heads, d_ff, dropout, gated=False)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.norm_cross = nn.LayerNorm(d_model, eps=1e-5)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.cross_attn.reset_parameters()
        self.norm_cross.reset_parameters()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor, internals: Internals | None = None) -> torch.Tensor:
        """memory: [B, S, d] encoder output; memory_mask: bool, broadcastable to [B, heads, T, S]."""
        x = self._self_attention_block(x, attn_mask, None, internals)
        x = self.norm_cross(x + self.dropout(self.cross_attn(x, memory_mask, attend_to=memory)))
        return self._feed_forward_block(x)


class TransformerEncoder(nn.Module):
    """A stack of post-LN layers without a final LayerNorm."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 gated: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, gated) for _ in range(n_layers))

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, packing: Packing | None = None,
                internals: Internals | None = None) -> torch.Tensor:
        record_state(internals, x, packing)
        for layer in self.layers:
            x = layer(x, attn_mask, packing, internals)
            record_state(internals, x, packing)
        return x


class TransformerDecoder(nn.Module):
    """A stack of post-LN decoder layers attending to one encoder output; no final LayerNorm."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor, internals: Internals | None = None) -> torch.Tensor:
        record_state(internals, x)
        for layer in self.layers:
            x = layer(x, attn_mask, memory, memory_mask, internals)
            record_state(internals, x)
        return x
