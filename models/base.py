"""What every model family shares: token embedding in, output map out, attention masks."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from layers import Packing, PositionalEncoding, TiedOutputMap

MAX_LEN = 5000


class TransformerBase(nn.Module):
    """`embedding · √d + PE · pos_scale` → dropout on the way in; the output map (tied to the
    embedding, or a Linear) on the way out.

    Subclasses put their layer stacks in the ModuleDict `trafo` and call `reset_parameters` at
    the end of their constructor. The names (`int_seq`, `pos.pe`, `input_embedding.weight`,
    `output_map.*`) are those of the research checkpoints.
    """

    def __init__(self, n_tokens: int, d_model: int, dropout: float, tied_embedding: bool,
                 pos_enc: bool, pos_scale: float):
        super().__init__()
        self.d_model = d_model
        self.pos_scale = pos_scale
        self.tied_embedding = tied_embedding
        self.register_buffer("int_seq", torch.arange(MAX_LEN))
        self.pos = PositionalEncoding(d_model, MAX_LEN) if pos_enc else None
        self.input_embedding = nn.Embedding(n_tokens, d_model)
        self.dropout = nn.Dropout(dropout)
        self.trafo = nn.ModuleDict()
        if tied_embedding:
            self.output_map = TiedOutputMap(n_tokens)
        else:
            self.output_map = nn.Linear(d_model, n_tokens)

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.input_embedding.weight)
        for stack in self.trafo.values():
            stack.reset_parameters()
        self.output_map.reset_parameters()

    def embed(self, tokens: torch.Tensor, packing: Packing | None = None) -> torch.Tensor:
        """tokens [B, T] → [B, T, d] (the [N, d] real tokens with `packing`); positions count
        from 0 at the first token."""
        x = self.input_embedding(tokens) * math.sqrt(self.d_model)
        if self.pos is not None:
            x = x + self.pos(tokens.shape[1]) * self.pos_scale
        return self.dropout(x if packing is None else packing.pack(x))

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., d] → logits [..., n_tokens]."""
        if self.tied_embedding:
            return self.output_map(x, self.input_embedding.weight)
        return self.output_map(x)

    def attention_mask(self, T: int, lengths: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """Bool [B or 1, 1, T, T], True where query t may attend to key s (s real; s ≤ t if causal)."""
        positions = self.int_seq[:T]
        if causal:
            mask = positions[None, :] <= positions[:, None]
        else:
            mask = torch.ones(T, T, dtype=torch.bool, device=positions.device)
        mask = mask[None, None]
        return mask if lengths is None else mask & self.key_mask(T, lengths)

    def key_mask(self, S: int, lengths: torch.Tensor) -> torch.Tensor:
        """Bool [B, 1, 1, S], True at the real keys (s < lengths[b])."""
        positions = self.int_seq[:S]
        return (positions[None, :] < lengths[:, None].to(positions.device))[:, None, None, :]
