"""Hard-Concrete L0 gates, one per attention head (Louizos et al. 2018; Voita et al. 2019)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

TEMPERATURE = 2.0 / 3.0  # β
STRETCH = (-0.1, 1.1)  # (γ, ζ): the stretched interval that is clamped to [0, 1]
EPS = 1e-6


class HardConcreteGate(nn.Module):
    """`n_gates` gates in [0, 1] with learnable `log_alpha`.

    Training: z = clamp(sigmoid((log u − log(1−u) + log_alpha) / β)·(ζ−γ) + γ, 0, 1), u ~ U(0, 1),
    one sample per forward pass. Eval: the same without noise, so gates are deterministic.
    `active` (saved with the model) is False for pruned gates, which are then exactly 0.
    The default `init_log_alpha` opens every gate (eval value 1), so a fresh gated model computes
    what the ungated one would, and the L0 penalty has to earn every closed head.
    """

    def __init__(self, n_gates: int, init_log_alpha: float = 3.0):
        super().__init__()
        self.init_log_alpha = init_log_alpha
        self.log_alpha = nn.Parameter(torch.empty(n_gates))
        self.register_buffer("active", torch.ones(n_gates, dtype=torch.bool))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.log_alpha, self.init_log_alpha)
        self.active.fill_(True)

    def forward(self) -> torch.Tensor:
        """The gate values [n_gates]: sampled in training, deterministic in eval."""
        if not self.training:
            return self.deterministic()
        u = torch.rand_like(self.log_alpha).clamp(EPS, 1.0 - EPS)
        return self._stretch(torch.sigmoid((u.log() - (-u).log1p() + self.log_alpha) / TEMPERATURE))

    def deterministic(self) -> torch.Tensor:
        """The noise-free gate values [n_gates] that eval mode uses."""
        return self._stretch(torch.sigmoid(self.log_alpha))

    def _stretch(self, s: torch.Tensor) -> torch.Tensor:
        low, high = STRETCH
        return (s * (high - low) + low).clamp(0.0, 1.0) * self.active

    def l0(self) -> torch.Tensor:
        """Expected number of non-zero gates, Σ P(z ≠ 0), over the gates not pruned."""
        low, high = STRETCH
        p_open = torch.sigmoid(self.log_alpha - TEMPERATURE * math.log(-low / high))
        return (p_open * self.active).sum()

    @torch.no_grad()
    def prune(self, threshold: float) -> torch.Tensor:
        """Close for good the open gates whose eval value is below `threshold`; return them as a mask."""
        closed = (self.deterministic() < threshold) & self.active
        self.active &= ~closed
        return closed
