"""Multi-head attention with the projection names of the research code."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from layers.head_gate import HardConcreteGate
from layers.internals import Internals
from layers.packing import Packing


class MultiHeadAttention(nn.Module):
    """Bias-free multi-head attention: `data_to_q`, a joint `data_to_kv`, and `multi_head_merge`.

    The kv projection's output is laid out per head as [key, value] (viewed as
    [batch, time, heads, 2, d_head]), the layout the research checkpoints were trained with.
    With `gated`, each head's output is scaled by a Hard-Concrete gate (`gate.log_alpha`)
    before the merge; without it the module has no gate parameters at all.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, gated: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = nn.Dropout(dropout)  # on the attention weights (its p, inside SDPA)
        self.data_to_q = nn.Linear(d_model, d_model, bias=False)
        self.data_to_kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.multi_head_merge = nn.Linear(d_model, d_model, bias=False)
        self.gate = HardConcreteGate(n_heads) if gated else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        d_model = self.data_to_q.in_features
        nn.init.xavier_uniform_(self.data_to_q.weight)
        # The two halves are initialised as two [d, d] matrices, as in the research code.
        nn.init.xavier_uniform_(self.data_to_kv.weight[:d_model])
        nn.init.xavier_uniform_(self.data_to_kv.weight[d_model:])
        nn.init.xavier_uniform_(self.multi_head_merge.weight)
        if self.gate is not None:
            self.gate.reset_parameters()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor,
                attend_to: torch.Tensor | None = None,
                packing: Packing | None = None, internals: Internals | None = None) -> torch.Tensor:
        """x: [B, T, d] queries; attend_to: [B, S, d] keys and values (None: x itself);
        attn_mask: bool, broadcastable to [B, heads, T, S], True = may attend.

        With `packing` (self-attention only), x is [N, d], the real tokens: the projections run
        on them alone and only the attention itself sees the padded [B, T] layout. With
        `internals`, the attention weights are appended to `internals.attentions`.
        """
        source = x if attend_to is None else attend_to
        q, kv = self.data_to_q(x), self.data_to_kv(source)
        if packing is not None:
            q, kv = packing.unpack(q), packing.unpack(kv)
        B, T, d_model = q.shape
        q = q.view(B, T, self.n_heads, self.d_head).transpose(1, 2)
        k, v = kv.view(B, kv.shape[1], self.n_heads, 2, self.d_head).unbind(dim=3)
        y = self._attend(q, k.transpose(1, 2), v.transpose(1, 2), attn_mask, internals)
        if self.gate is not None:
            y = y * self.gate()[:, None, None]  # y is [B, heads, T, d_head]
        y = y.transpose(1, 2).reshape(B, T, d_model)
        return self.multi_head_merge(y if packing is None else packing.pack(y))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor,
                internals: Internals | None) -> torch.Tensor:
        """softmax(q kᵀ / √d_head, masked) v with dropout on the weights; [B, heads, T, d_head].

        The fused kernel does not return the weights: asked for them, the same product is written
        out and its weights recorded.
        """
        if internals is None:
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout.p if self.training else 0.0)
        scores = (q @ k.transpose(-2, -1)) * self.d_head ** -0.5
        weights = scores.masked_fill(~attn_mask, float("-inf")).softmax(-1)
        internals.attentions.append(weights)
        return self.dropout(weights) @ v
