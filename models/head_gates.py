"""Model-level use of the head gates: the L0 term, per-head openness, pruning."""
from __future__ import annotations

import torch
import torch.nn as nn

from layers import HardConcreteGate
from util import HierGenError


def head_gates(model: nn.Module) -> list[HardConcreteGate]:
    """The model's head gates, one per gated attention module, in layer order."""
    return [m for m in model.modules() if isinstance(m, HardConcreteGate)]


def l0_norm(model: nn.Module) -> torch.Tensor:
    """The L0 penalty: expected number of open heads, Σ over heads of P(gate ≠ 0)."""
    return torch.stack([gate.l0() for gate in _gates_or_error(model)]).sum()


@torch.no_grad()
def gate_openness(model: nn.Module) -> torch.Tensor:
    """[n_layers, n_heads]: each head's deterministic (eval-mode) gate value; 0 = closed, 1 = open."""
    return torch.stack([gate.deterministic() for gate in _gates_or_error(model)])


def prune_heads(model: nn.Module, threshold: float = 0.5) -> torch.Tensor:
    """Fix closed (gate exactly 0, also in training) every head whose gate openness is below
    `threshold`; return the [n_layers, n_heads] mask of the heads closed by this call."""
    return torch.stack([gate.prune(threshold) for gate in _gates_or_error(model)])


def _gates_or_error(model: nn.Module) -> list[HardConcreteGate]:
    gates = head_gates(model)
    if not gates:
        raise HierGenError("this model has no head gates (build it with --gated-model)")
    return gates
