"""Dropout whose CPU mask costs one random draw per element and nothing more."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Dropout(nn.Module):
    """`nn.Dropout` in distribution: each element is zeroed with probability p, the rest scaled
    by 1/(1−p).

    On the CPU, `F.dropout` fills a float Bernoulli mask, rescales it, then multiplies; drawing
    uniforms and thresholding them in place is about a third cheaper, and dropout runs on every
    layer's widest activations. Other devices keep PyTorch's fused kernel.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        # u ≥ p keeps an element with probability 1 − p; the 0/1 mask becomes the scaled mask.
        return x * torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
