"""LM objectives: batch → training loss, exact loss sums for reporting, and task logits."""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from collate import IGNORE, Batch, TokenBatch
from interfaces.output import LMOutput, logits_at, objective_output, token_losses
from models.head_gates import l0_norm


class LanguageModelInterface:
    """Teacher-forced next-token objective on `[SOS] input marker output [EOS]`.

    With `prefix_lm` the loss counts only the output half (targets after the marker). Training
    needs only the tokens (a TokenBatch); the task logits come with a Batch of evaluation lines.
    """

    def __init__(self, model: nn.Module, prefix_lm: bool = False, label_smoothing: float = 0.0):
        self.model = model
        self.prefix_lm = prefix_lm
        self.label_smoothing = label_smoothing

    def __call__(self, batch: TokenBatch) -> LMOutput:
        logits = self.model(batch.inputs, batch.lengths)
        plain, trained = token_losses(logits, batch.targets, self.label_smoothing)
        real = batch.targets != IGNORE
        positions = torch.arange(batch.targets.shape[1], device=batch.targets.device)
        first = real & (positions[None, :] <= batch.prefix_len[:, None])
        second = real & ~first
        counted = second if self.prefix_lm else real
        eval_logits = logits_at(logits, batch.eval_pos) if isinstance(batch, Batch) else None
        return objective_output(plain, trained, counted, first, second, logits, eval_logits)


class GatedLMInterface(LanguageModelInterface):
    """The LM objective plus `l0_penalty` · L0, the expected number of open heads.

    The reported loss sums stay the plain LM's, so gated and ungated runs compare directly.
    """

    def __init__(self, model: nn.Module, l0_penalty: float, prefix_lm: bool = False,
                 label_smoothing: float = 0.0):
        super().__init__(model, prefix_lm, label_smoothing)
        self.l0_penalty = l0_penalty

    def __call__(self, batch: TokenBatch) -> LMOutput:
        out = super().__call__(batch)
        l0 = l0_norm(self.model)
        return replace(out, loss=out.loss + self.l0_penalty * l0, l0=l0.detach())
