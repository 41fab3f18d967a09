"""Classifier objective: predict, from the input alone, the token the task accuracy looks at."""
from __future__ import annotations

import torch

from collate import IGNORE, Batch
from interfaces.batch_views import source_view
from interfaces.output import LMOutput, objective_output, token_losses
from models import TransformerClassifier


class ClassifierInterface:
    """Cross-entropy of the classifier logits against `eval_gold` (QF: the fronted auxiliary,
    TI: the present main verb) on the lines that have a target; other lines add nothing.

    The per-line losses are reported as the second half (the first half is empty).
    """

    def __init__(self, model: TransformerClassifier, label_smoothing: float = 0.0):
        self.model = model
        self.label_smoothing = label_smoothing

    def __call__(self, batch: Batch) -> LMOutput:
        tokens, lengths = source_view(batch, with_sos=True)
        logits = self.model(tokens, lengths)
        has_target = batch.eval_pos >= 0
        gold = torch.where(has_target, batch.eval_gold, IGNORE)
        plain, trained = token_losses(logits, gold, self.label_smoothing)
        eval_logits = torch.where(has_target[:, None], logits, torch.zeros_like(logits))
        return objective_output(plain, trained, has_target, torch.zeros_like(has_target),
                                has_target, logits, eval_logits)
