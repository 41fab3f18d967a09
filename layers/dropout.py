"""Dropout whose CPU mask costs a quarter of a 64-bit random draw per element."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Dropout(nn.Module):
    """`nn.Dropout` in distribution: each element is zeroed with probability p, the rest scaled
    by 1/(1−p).

    On the CPU, drawing the random numbers is most of dropout's cost, and dropout runs on every
    layer's widest activations. `F.dropout` draws a random number per element; here one 64-bit
    draw gives four elements 16 bits each, and an element is kept when its bits reach a
    threshold. p is then exact to 1/65536 (0.1 is realised as 0.100006), and a step's dropout is
    under half as dear. Other devices keep PyTorch's fused kernel.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        # The bits read as int16, uniform on [-2^15, 2^15): below the threshold is dropped.
        self.threshold = -32768 + round(p * 65536)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        return x * self._scaled_keep_mask(x)

    def _scaled_keep_mask(self, x: torch.Tensor) -> torch.Tensor:
        """1/(1−p) where kept, 0 where dropped, shaped like x."""
        d = x.shape[-1]
        # empty_like keeps a vmapped x's batch dimension, so each seed of a multi-seed step
        # draws its own masks.
        words = torch.empty_like(x[..., :(d + 3) // 4], dtype=torch.int64,
                                 memory_format=torch.contiguous_format)
        bits = words.random_(-2 ** 63, None).view(torch.int16)[..., :d]
        return bits.to(x.dtype).ge_(self.threshold).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
