"""Causal decoder-only transformer LM with the module names of the research checkpoints."""
from __future__ import annotations

import torch

from layers import Internals, Packing, TransformerEncoder
from models.base import TransformerBase


class TransformerLM(TransformerBase):
    """`embedding · √d + PE · pos_scale` → dropout → causal post-LN layers → output map.

    State-dict keys equal the research names without the `model.` prefix (and without the
    research code's unused decoder): `int_seq`, `pos.pe`, `input_embedding.weight`,
    `output_map.bias` (+ `output_map.weight` if untied), `trafo.encoder.layers.{i}.*`.
    With `gated`, every head carries a Hard-Concrete gate (`...self_attn.gate.log_alpha`).
    """

    def __init__(self, n_tokens: int, d_model: int, n_heads: int, n_layers: int, d_ff: int,
                 dropout: float = 0.1, tied_embedding: bool = False, pos_enc: bool = True,
                 pos_scale: float = 1.0, gated: bool = False):
        super().__init__(n_tokens, d_model, dropout, tied_embedding, pos_enc, pos_scale)
        self.trafo["encoder"] = TransformerEncoder(n_layers, d_model, n_heads, d_ff, dropout, gated)
        self.reset_parameters()

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None,
                pack: bool | None = None, internals: Internals | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """inputs: [B, T] token ids starting with SOS; lengths: [B] real lengths (None: no padding).

        Returns logits [B, T, n_tokens]; position t predicts the token at t + 1. With `pack`, all
        but attention runs on the real tokens only and padded positions get zero logits; the
        default packs on the CPU, where padding costs FLOPs, and not on a GPU, where sizing the
        packed tensor would wait for the device every step. With `internals`, every layer's hidden
        states and attention weights are recorded in it as they are computed. `attn_mask` (bool,
        broadcastable to [B, 1, T, T], True = may attend) restricts attention further at every
        layer: it is ANDed with the causal and padding mask (the tree analysis hides context with it).
        """
        T = inputs.shape[1]
        mask = self.attention_mask(T, lengths, causal=True)
        if attn_mask is not None:
            mask = mask & attn_mask
        if pack is None:
            pack = inputs.device.type == "cpu"
        if not pack or lengths is None:
            return self.output(self.trafo["encoder"](self.embed(inputs), mask, internals=internals))
        packing = Packing.from_lengths(lengths.to(inputs.device), T)
        states = self.trafo["encoder"](self.embed(inputs, packing), mask, packing, internals)
        return packing.unpack(self.output(states))
