"""The objective settings of a run, checked against its model, and the one place that picks each
model family's objective."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn as nn

from interfaces.classifier import ClassifierInterface
from interfaces.language_model import GatedLMInterface, LanguageModelInterface
from interfaces.seq2seq import Seq2SeqInterface
from transformer_helpers import ModelConfig
from util import HierGenError

DEFAULT_L0_PENALTY = 0.01
Objective = LanguageModelInterface | Seq2SeqInterface | ClassifierInterface


@dataclass(frozen=True)
class ObjectiveConfig:
    """What the training loss counts and adds, named like the command-line flags."""

    is_prefix_lm: bool = False  # the LM's loss counts only the output half
    label_smoothing: float = 0.0
    gate_l0_penalty: float = DEFAULT_L0_PENALTY  # λ: gated LM loss = LM loss + λ · Σ_heads P(gate ≠ 0)

    def check(self, model: ModelConfig) -> None:
        """Refuse values that cannot work and settings the model's family would ignore."""
        if not 0.0 <= self.label_smoothing < 1.0:
            raise HierGenError("--label-smoothing must be in [0, 1)")
        if self.is_prefix_lm and model.family != "lm":
            raise HierGenError("--is_prefix_lm applies to the LM only, not to --not_lm or --mode enc")
        if not (math.isfinite(self.gate_l0_penalty) and self.gate_l0_penalty >= 0):
            raise HierGenError(f"--gate_l0_penalty must be a finite number >= 0, got {self.gate_l0_penalty}")
        if self.gate_l0_penalty != DEFAULT_L0_PENALTY and not model.gated_model:
            raise HierGenError("--gate_l0_penalty applies to the gated LM (--gated-model) only")


def make_objective(model_cfg: ModelConfig, model: nn.Module, objective: ObjectiveConfig) -> Objective:
    """The objective of `model`'s family: seq2seq, classifier, gated LM (LM loss + penalty · L0) or
    LM (the prefix-LM objective with --is_prefix_lm)."""
    objective.check(model_cfg)
    if model_cfg.family == "enc_dec":
        return Seq2SeqInterface(model, objective.label_smoothing)
    if model_cfg.family == "enc":
        return ClassifierInterface(model, objective.label_smoothing)
    if model_cfg.gated_model:
        return GatedLMInterface(model, objective.gate_l0_penalty, objective.is_prefix_lm, objective.label_smoothing)
    return LanguageModelInterface(model, objective.is_prefix_lm, objective.label_smoothing)
