"""LM objectives: batch → training loss, exact loss sums for reporting, and task logits."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from collate import IGNORE, Batch
from models import TransformerLM


@dataclass
class LMOutput:
    """What one forward pass yields.

    `loss` is the training objective (with label smoothing, if any). The `*_sum`/`*_tokens`
    fields are detached plain cross-entropy sums and token counts, so that means over many
    batches can be token-weighted exactly: `loss_sum`/`n_tokens` cover the objective's tokens
    (all real targets for the LM, the output half for the prefix LM); the first half is targets
    t ≤ prefix_len (input words and marker), the second half the output words and EOS.
    `eval_logits` [B, V+2] are the logits at each row's `eval_pos` (zeros where it is -1).
    """

    loss: torch.Tensor
    loss_sum: torch.Tensor
    n_tokens: torch.Tensor
    first_half_loss_sum: torch.Tensor
    first_half_tokens: torch.Tensor
    second_half_loss_sum: torch.Tensor
    second_half_tokens: torch.Tensor
    logits: torch.Tensor
    eval_logits: torch.Tensor


class LanguageModelInterface:
    """Teacher-forced next-token objective on `[SOS] input marker output [EOS]`.

    With `prefix_lm` the loss counts only the output half (targets after the marker).
    """

    def __init__(self, model: TransformerLM, prefix_lm: bool = False, label_smoothing: float = 0.0):
        self.model = model
        self.prefix_lm = prefix_lm
        self.label_smoothing = label_smoothing

    def __call__(self, batch: Batch) -> LMOutput:
        logits = self.model(batch.inputs, batch.lengths)
        flat_logits, flat_targets = logits.flatten(0, 1), batch.targets.flatten()
        token_loss = F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE,
                                     reduction="none").view_as(batch.targets)
        real = batch.targets != IGNORE
        positions = torch.arange(batch.targets.shape[1], device=batch.targets.device)
        first = real & (positions[None, :] <= batch.prefix_len[:, None])
        second = real & ~first
        counted = second if self.prefix_lm else real

        train_loss = token_loss
        if self.label_smoothing > 0:
            train_loss = F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE,
                                         reduction="none", label_smoothing=self.label_smoothing
                                         ).view_as(batch.targets)
        n_counted = counted.sum()
        # clamp: a batch without counted tokens gives loss 0, not NaN
        loss = (train_loss * counted).sum() / n_counted.clamp(min=1)

        plain = token_loss.detach()
        return LMOutput(
            loss=loss,
            loss_sum=(plain * counted).sum(),
            n_tokens=n_counted,
            first_half_loss_sum=(plain * first).sum(),
            first_half_tokens=first.sum(),
            second_half_loss_sum=(plain * second).sum(),
            second_half_tokens=second.sum(),
            logits=logits,
            eval_logits=_logits_at(logits, batch.eval_pos),
        )


def _logits_at(logits: torch.Tensor, eval_pos: torch.Tensor) -> torch.Tensor:
    """Row b of the result is logits[b, eval_pos[b]]; zeros where eval_pos is -1."""
    has_target = eval_pos >= 0
    index = eval_pos.clamp(min=0).to(logits.device)
    picked = logits[torch.arange(logits.shape[0], device=logits.device), index]
    return torch.where(has_target[:, None].to(logits.device), picked, torch.zeros_like(picked))
