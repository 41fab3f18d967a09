"""What every objective returns, and the loss bookkeeping they share."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from collate import IGNORE


@dataclass
class LMOutput:
    """What one forward pass yields (every model family returns this).

    `loss` is the training objective (with label smoothing and, for the gated LM, the L0 term).
    The `*_sum`/`*_tokens` fields are detached plain cross-entropy sums and counts, so that means
    over many batches can be token-weighted exactly: `loss_sum`/`n_tokens` cover the objective's
    tokens (all real targets for the LM, the output half for the prefix LM and the seq2seq model,
    one per line with a target for the classifier); the first half is targets t ≤ prefix_len
    (input words and marker), the second half the output words and EOS (the classifier's lines).
    `eval_logits` [B, V+2] are the logits that decide the task (zeros where there is no target;
    None for a batch without evaluation targets).
    `l0` is the gated LM's L0 penalty before weighting (None for the other models).
    """

    loss: torch.Tensor
    loss_sum: torch.Tensor
    n_tokens: torch.Tensor
    first_half_loss_sum: torch.Tensor
    first_half_tokens: torch.Tensor
    second_half_loss_sum: torch.Tensor
    second_half_tokens: torch.Tensor
    logits: torch.Tensor
    eval_logits: torch.Tensor | None
    l0: torch.Tensor | None = None


def token_losses(logits: torch.Tensor, targets: torch.Tensor,
                 label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy per target (shaped like `targets`, IGNORE skipped): plain, and as trained."""
    flat_logits, flat_targets = logits.flatten(0, -2), targets.flatten()
    plain = F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE,
                            reduction="none").view_as(targets)
    if label_smoothing == 0:
        return plain, plain
    smoothed = F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE, reduction="none",
                               label_smoothing=label_smoothing).view_as(targets)
    return plain, smoothed


def objective_output(plain: torch.Tensor, trained: torch.Tensor, counted: torch.Tensor,
                     first: torch.Tensor, second: torch.Tensor, logits: torch.Tensor,
                     eval_logits: torch.Tensor | None) -> LMOutput:
    """The mean of `trained` over `counted` as the loss, and the plain sums over each mask."""
    n_counted = counted.sum()
    plain = plain.detach()
    return LMOutput(
        # clamp: a batch without counted targets gives loss 0, not NaN
        loss=(trained * counted).sum() / n_counted.clamp(min=1),
        loss_sum=(plain * counted).sum(),
        n_tokens=n_counted,
        first_half_loss_sum=(plain * first).sum(),
        first_half_tokens=first.sum(),
        second_half_loss_sum=(plain * second).sum(),
        second_half_tokens=second.sum(),
        logits=logits,
        eval_logits=eval_logits,
    )


def logits_at(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Row b of the result is logits[b, pos[b]]; zeros where pos is -1."""
    has_target = pos >= 0
    index = pos.clamp(min=0).to(logits.device)
    picked = logits[torch.arange(logits.shape[0], device=logits.device), index]
    return torch.where(has_target[:, None].to(logits.device), picked, torch.zeros_like(picked))
