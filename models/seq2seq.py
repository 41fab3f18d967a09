"""Encoder–decoder transformer: `input . marker` → output sentence + EOS."""
from __future__ import annotations

import torch

from layers import Internals, TransformerDecoder, TransformerEncoder
from models.base import TransformerBase


class TransformerEncDec(TransformerBase):
    """Post-LN encoder over the source, post-LN decoder (causal self-attention + cross-attention)
    over `[SOS] output`; one embedding serves both sides (source and output share the vocabulary).

    State-dict keys: those of `TransformerBase`, `trafo.encoder.layers.{i}.*` and
    `trafo.decoder.layers.{i}.*` (decoder layers add `cross_attn.*` and `norm_cross.*`).
    """

    def __init__(self, n_tokens: int, d_model: int, n_heads: int, n_encoder_layers: int,
                 n_decoder_layers: int, d_ff: int, dropout: float = 0.1,
                 tied_embedding: bool = False, pos_enc: bool = True, pos_scale: float = 1.0):
        super().__init__(n_tokens, d_model, dropout, tied_embedding, pos_enc, pos_scale)
        self.trafo["encoder"] = TransformerEncoder(n_encoder_layers, d_model, n_heads, d_ff, dropout)
        self.trafo["decoder"] = TransformerDecoder(n_decoder_layers, d_model, n_heads, d_ff, dropout)
        self.reset_parameters()

    def encode(self, source: torch.Tensor, source_lengths: torch.Tensor,
               internals: Internals | None = None) -> torch.Tensor:
        """source [B, S] (padded) → encoder states [B, S, d], attending in both directions."""
        mask = self.attention_mask(source.shape[1], source_lengths, causal=False)
        return self.trafo["encoder"](self.embed(source), mask, internals=internals)

    def decode(self, memory: torch.Tensor, source_lengths: torch.Tensor, target_in: torch.Tensor,
               target_lengths: torch.Tensor, internals: Internals | None = None) -> torch.Tensor:
        """Teacher-forced decoder logits [B, T, n_tokens]; position t predicts target token t."""
        self_mask = self.attention_mask(target_in.shape[1], target_lengths, causal=True)
        memory_mask = self.key_mask(memory.shape[1], source_lengths)
        x = self.trafo["decoder"](self.embed(target_in), self_mask, memory, memory_mask, internals)
        return self.output(x)

    def forward(self, source: torch.Tensor, source_lengths: torch.Tensor, target_in: torch.Tensor,
                target_lengths: torch.Tensor, internals: Internals | None = None) -> torch.Tensor:
        """source: [B, S] `input . marker`; target_in: [B, T] `[SOS] output` → logits [B, T, n_tokens]
        (the encoder's, then the decoder's states and self-attention weights recorded in `internals`)."""
        memory = self.encode(source, source_lengths, internals)
        return self.decode(memory, source_lengths, target_in, target_lengths, internals)
