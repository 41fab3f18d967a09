"""Sequences -> padded batch tensors (batch-first)."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from sequence import Sequence

IGNORE = -100  # target value of padding, skipped by cross-entropy


@dataclass
class TokenBatch:
    """What the LM objective trains on: inputs/targets [B, T] (T = longest sequence - 1), the
    real lengths [B] and the prefix lengths [B] (input words; the marker follows them)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor
    prefix_len: torch.Tensor

    def to(self, device: torch.device | str) -> "TokenBatch":
        """The batch on `device`. A copy to a GPU goes through pinned memory: from ordinary
        memory, CUDA waits for the GPU to finish its queued work first, a host sync per step."""
        pin = torch.device(device).type == "cuda"
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = (value.pin_memory() if pin else value).to(device, non_blocking=True)
        return replace(self, **moved)


@dataclass
class Batch(TokenBatch):
    """A padded batch of lines with what evaluation reads: per line, the input position whose
    logits decide the task (`eval_pos`, -1: none) and the gold token there.

    eval_candidates is a [B, n_classes] mask of the tokens the task-accuracy argmax may pick;
    eval_answers[:, r] is the token rule `answer_names[r]` predicts (-1 where it says nothing).
    """

    eval_pos: torch.Tensor
    eval_gold: torch.Tensor
    eval_candidates: torch.Tensor
    eval_answers: torch.Tensor
    answer_names: tuple[str, ...] = ()
    type_tags: tuple[str | None, ...] = ()


def collate(seqs: list[Sequence], n_classes: int, pad_id: int = 0) -> Batch:
    """Pad `seqs` to one batch; n_classes = vocabulary size + 2 (EOS, SOS)."""
    B, T = len(seqs), max(len(s.tokens) for s in seqs) - 1
    inputs = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), IGNORE, dtype=torch.long)
    candidates = torch.zeros((B, n_classes), dtype=torch.bool)
    answer_names = tuple(sorted({rule for s in seqs for rule, _ in s.answers}))
    answers = torch.full((B, len(answer_names)), -1, dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s.tokens) - 1
        inputs[i, :n] = torch.tensor(s.tokens[:-1])
        targets[i, :n] = torch.tensor(s.tokens[1:])
        if s.candidates is None:
            candidates[i] = True
        else:
            candidates[i, list(s.candidates)] = True
        for rule, token in s.answers:
            answers[i, answer_names.index(rule)] = token
    return Batch(
        inputs=inputs,
        targets=targets,
        lengths=torch.tensor([len(s.tokens) - 1 for s in seqs]),
        prefix_len=torch.tensor([s.prefix_len for s in seqs]),
        eval_pos=torch.tensor([s.eval_pos for s in seqs]),
        eval_gold=torch.tensor([s.gold for s in seqs]),
        eval_candidates=candidates,
        eval_answers=answers,
        answer_names=answer_names,
        type_tags=tuple(s.type_tag for s in seqs),
    )
