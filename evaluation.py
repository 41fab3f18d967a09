"""Evaluation: one teacher-forced pass per split gives the losses and the task accuracy.

Task-agnostic: each batch says, per line, at which position the task is decided, which tokens
the argmax may choose from, the gold token, and what each competing rule would predict.
Per-type accuracies and the shares of each rule's answer are taken over the lines where the rules
disagree (the generalization lines: QF test, TI lines with an agreement attractor).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch

from collate import Batch, collate
from data_utils.example import Example
from sequence import encode
from vocabulary import WordVocabulary


@dataclass
class SplitResult:
    """Token-weighted mean losses of one split and, per line with a target, what was predicted."""

    loss: float
    first_half: float
    second_half: float
    n_targets: int = 0
    n_correct: int = 0
    per_type: dict[str, list[int]] = field(default_factory=dict)  # type -> [correct, count], rule lines
    rule_counts: dict[str, int] = field(default_factory=dict)     # rule -> lines it predicted
    n_rule_lines: int = 0                                          # lines where rules disagree

    @property
    def accuracy(self) -> float:
        return self.n_correct / self.n_targets if self.n_targets else float("nan")

    def metrics(self, split: str, callback: bool) -> dict[str, float]:
        """The research metric names (the `ppl` keys hold mean cross-entropy, as there)."""
        out = {f"curr-{split}-ppl": self.loss,
               f"curr-{split}-ppl_first_half": self.first_half,
               f"curr-{split}-ppl_second_half": self.second_half}
        if not callback or not self.n_targets:
            return out
        out[f"{split}_aux"] = self.accuracy
        for tag, (correct, count) in sorted(self.per_type.items()):
            out[f"{split}_aux_type/{tag.replace(chr(9), ' ')}"] = correct / count
        if self.n_rule_lines:
            matched = sum(self.rule_counts.values())
            for rule, count in sorted(self.rule_counts.items()):
                out[f"{split}_{rule}"] = count / self.n_rule_lines
            out[f"{split}_other"] = (self.n_rule_lines - matched) / self.n_rule_lines
        return out


def make_eval_batches(examples: list[Example], vocab: WordVocabulary, batch_size: int) -> list[Batch]:
    """Encode a split once, sorted by length so that batches carry little padding."""
    seqs = sorted((encode(e, vocab) for e in examples), key=lambda s: len(s.tokens))
    n_classes = len(vocab) + 2
    return [collate(seqs[i:i + batch_size], n_classes) for i in range(0, len(seqs), batch_size)]


@torch.inference_mode()
def evaluate(interface, batches: list[Batch], device: torch.device | str) -> SplitResult:
    """Run the model over a split in eval mode and gather losses and task predictions."""
    model = interface.model
    was_training = model.training
    model.eval()
    sums = torch.zeros(6, dtype=torch.float64)
    per_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    rule_counts: dict[str, int] = defaultdict(int)
    n_targets = n_correct = n_rule_lines = 0
    for batch in batches:
        batch = batch.to(device)
        out = interface(batch)
        sums += torch.tensor([out.loss_sum, out.n_tokens, out.first_half_loss_sum,
                              out.first_half_tokens, out.second_half_loss_sum,
                              out.second_half_tokens], dtype=torch.float64)
        has_target = batch.eval_pos >= 0
        if not has_target.any():
            continue
        logits = out.eval_logits.float().masked_fill(~batch.eval_candidates, float("-inf"))
        pred = logits.argmax(-1)
        correct = (pred == batch.eval_gold) & has_target
        n_targets += int(has_target.sum())
        n_correct += int(correct.sum())
        has_rules = (batch.eval_answers >= 0).any(-1) & has_target
        n_rule_lines += int(has_rules.sum())
        for i in has_rules.nonzero().flatten().tolist():
            tag = batch.type_tags[i]
            if tag is not None:
                per_type[tag][0] += int(correct[i])
                per_type[tag][1] += 1
        for r, rule in enumerate(batch.answer_names):
            rule_counts[rule] += int(((pred == batch.eval_answers[:, r]) & has_rules).sum())
    model.train(was_training)
    loss_sum, n, first_sum, n_first, second_sum, n_second = sums.tolist()
    return SplitResult(loss_sum / max(n, 1), first_sum / max(n_first, 1), second_sum / max(n_second, 1),
                       n_targets, n_correct, dict(per_type), dict(rule_counts), n_rule_lines)
