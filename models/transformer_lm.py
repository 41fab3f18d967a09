"""Causal decoder-only transformer LM with the module names of the research checkpoints."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from layers import PositionalEncoding, TiedOutputMap, TransformerEncoder

MAX_LEN = 5000


class TransformerLM(nn.Module):
    """`embedding · √d + PE · pos_scale` → dropout → post-LN layers → output map.

    State-dict keys equal the research names without the `model.` prefix (and without the
    research code's unused decoder): `int_seq`, `pos.pe`, `input_embedding.weight`,
    `output_map.bias` (+ `output_map.weight` if untied), `trafo.encoder.layers.{i}.*`.
    """

    def __init__(self, n_tokens: int, d_model: int, n_heads: int, n_layers: int, d_ff: int,
                 dropout: float = 0.1, tied_embedding: bool = False, pos_enc: bool = True,
                 pos_scale: float = 1.0):
        super().__init__()
        self.d_model = d_model
        self.pos_scale = pos_scale
        self.tied_embedding = tied_embedding
        self.register_buffer("int_seq", torch.arange(MAX_LEN))
        self.pos = PositionalEncoding(d_model, MAX_LEN) if pos_enc else None
        self.input_embedding = nn.Embedding(n_tokens, d_model)
        self.dropout = nn.Dropout(dropout)
        encoder = TransformerEncoder(n_layers, d_model, n_heads, d_ff, dropout)
        self.trafo = nn.ModuleDict({"encoder": encoder})  # named like the research checkpoints
        if tied_embedding:
            self.output_map = TiedOutputMap(n_tokens)
        else:
            self.output_map = nn.Linear(d_model, n_tokens)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.input_embedding.weight)
        self.trafo["encoder"].reset_parameters()
        self.output_map.reset_parameters()

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """inputs: [B, T] token ids starting with SOS; lengths: [B] real lengths (None: no padding).

        Returns logits [B, T, n_tokens]; position t predicts the token at t + 1.
        """
        T = inputs.shape[1]
        x = self.input_embedding(inputs) * math.sqrt(self.d_model)
        if self.pos is not None:
            x = x + self.pos(T) * self.pos_scale
        x = self.trafo["encoder"](self.dropout(x), self._attention_mask(T, lengths))
        if self.tied_embedding:
            return self.output_map(x, self.input_embedding.weight)
        return self.output_map(x)

    def _attention_mask(self, T: int, lengths: torch.Tensor | None) -> torch.Tensor:
        """Bool mask [B or 1, 1, T, T], True where query t may attend to key s (s ≤ t, s real)."""
        positions = self.int_seq[:T]
        mask = positions[None, :] <= positions[:, None]
        if lengths is None:
            return mask[None, None]
        key_is_real = positions[None, :] < lengths[:, None].to(positions.device)
        return mask[None, None] & key_is_real[:, None, None, :]
