"""What a forward pass records on request: every layer's hidden states and attention weights."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from layers.packing import Packing


@dataclass
class Internals:
    """Pass one to a model's forward (`model(..., internals=Internals())`) and read it afterwards.

    `hidden_states`: the input of the first layer (scaled embeddings plus positions), then each
    layer's output, [B, T, d] each; `attentions`: each layer's self-attention weights [B, heads, T, T]
    (softmax over the keys, before dropout). An encoder–decoder records its encoder's layers, then
    its decoder's. Positions past a line's length carry no meaning.
    """

    hidden_states: list[torch.Tensor] = field(default_factory=list)
    attentions: list[torch.Tensor] = field(default_factory=list)


def record_state(internals: Internals | None, x: torch.Tensor, packing: Packing | None = None) -> None:
    """Append hidden state x (the real tokens of `packing`, unpacked to [B, T, d]) when recording."""
    if internals is not None:
        internals.hidden_states.append(x if packing is None else packing.unpack(x))
