"""Transformer encoder + linear classifier read at the last input position."""
from __future__ import annotations

import torch

from layers import Internals, TransformerEncoder
from models.base import TransformerBase


class TransformerClassifier(TransformerBase):
    """Post-LN encoder over `[SOS] input . marker` (bidirectional, or causal with `causal`); the
    output map at the last real position (the marker) gives logits over all tokens.

    Classifying over the whole token space keeps the task's candidate mask usable as is.
    State-dict keys: those of `TransformerBase` and `trafo.encoder.layers.{i}.*`.
    """

    def __init__(self, n_tokens: int, d_model: int, n_heads: int, n_layers: int, d_ff: int,
                 dropout: float = 0.1, tied_embedding: bool = False, pos_enc: bool = True,
                 pos_scale: float = 1.0, causal: bool = False):
        super().__init__(n_tokens, d_model, dropout, tied_embedding, pos_enc, pos_scale)
        self.causal = causal
        self.trafo["encoder"] = TransformerEncoder(n_layers, d_model, n_heads, d_ff, dropout)
        self.reset_parameters()

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor,
               internals: Internals | None = None) -> torch.Tensor:
        """tokens [B, T] (padded) → encoder states [B, T, d]."""
        mask = self.attention_mask(tokens.shape[1], lengths, causal=self.causal)
        return self.trafo["encoder"](self.embed(tokens), mask, internals=internals)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor,
                internals: Internals | None = None) -> torch.Tensor:
        """tokens: [B, T]; lengths: [B] → logits [B, n_tokens] at position lengths - 1 (every
        layer's states and attention weights recorded in `internals`, when given)."""
        states = self.encode(tokens, lengths, internals)
        last = states[torch.arange(tokens.shape[0], device=tokens.device), lengths.to(tokens.device) - 1]
        return self.output(last)
