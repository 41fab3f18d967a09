"""Greedy decoding of the output sentence, and full-sequence accuracy (McCoy et al.'s full-sentence
accuracy): the share of lines whose greedily decoded output, up to its EOS, equals the gold output.

The LM reads `[SOS] input marker` and extends it one argmax token at a time; the seq2seq model
encodes `input marker` once and decodes from `[SOS]`. The classifier predicts one token, not a
sentence, so it has no full-sequence accuracy. There is no key/value cache: each step runs the
model over the whole prefix, which costs little at these lengths.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from collate import Batch
from interfaces.batch_views import row_windows, source_view

# rows (indices into the batch), tokens [n, T] padded, lengths [n] -> next-token logits [n, V]
NextLogits = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def greedy_decode(next_logits: NextLogits, prompts: torch.Tensor, lengths: torch.Tensor, eos: int,
                  max_new: int) -> torch.Tensor:
    """Extend each prompt (row of `prompts`, `lengths` real tokens) by its argmax token until it
    has emitted `eos` or `max_new` tokens; stops as soon as every row has emitted EOS.

    Returns [B, max_new]: the generated tokens, EOS included, then -1 (nothing generated).
    """
    B = prompts.shape[0]
    tokens = torch.cat([prompts, prompts.new_zeros(B, max_new)], dim=1)
    lengths = lengths.clone().to(prompts.device)
    out = torch.full((B, max_new), -1, dtype=torch.long, device=prompts.device)
    active = torch.arange(B, device=prompts.device)
    for k in range(max_new):
        # Only the rows still decoding run through the model.
        n = lengths[active]
        step = next_logits(active, tokens[active, :int(n.max())], n).argmax(-1)
        tokens[active, n] = step
        out[active, k] = step
        lengths[active] += 1
        active = active[step != eos]
        if len(active) == 0:
            break
    return out


def lm_next_logits(model: nn.Module) -> NextLogits:
    """The LM's logits at each row's last real position."""
    def next_logits(rows, tokens, lengths):
        return model(tokens, lengths)[torch.arange(len(rows), device=tokens.device), lengths - 1]
    return next_logits


def seq2seq_next_logits(model: nn.Module, source: torch.Tensor, source_lengths: torch.Tensor) -> NextLogits:
    """The seq2seq decoder's logits at each row's last position, the source encoded once."""
    memory = model.encode(source, source_lengths)

    def next_logits(rows, tokens, lengths):
        logits = model.decode(memory[rows], source_lengths[rows], tokens, lengths)
        return logits[torch.arange(len(rows), device=tokens.device), lengths - 1]
    return next_logits


def gold_outputs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Each line's gold `output EOS` (the targets after the marker), padded with -1; its lengths."""
    start = batch.prefix_len + 1  # the marker's position; its target is the first output word
    lengths = batch.lengths - start
    return row_windows(batch.targets, start, lengths, fill=-1), lengths


def decode_batch(model: nn.Module, family: str, batch: Batch, eos: int, max_new: int) -> torch.Tensor:
    """Greedy outputs [B, max_new] of an LM ("lm") or seq2seq ("enc_dec") model for a batch's lines."""
    if family == "lm":
        lengths = batch.prefix_len + 2  # [SOS] input marker
        prompts = row_windows(batch.inputs, torch.zeros_like(lengths), lengths, fill=0)
        return greedy_decode(lm_next_logits(model), prompts, lengths, eos, max_new)
    if family == "enc_dec":
        source, source_lengths = source_view(batch, with_sos=False)
        sos = batch.inputs[:, :1]  # every line starts with SOS
        return greedy_decode(seq2seq_next_logits(model, source, source_lengths), sos,
                             torch.ones_like(source_lengths), eos, max_new)
    raise ValueError(f"the {family!r} model family does not decode sentences")


def exact_matches(decoded: torch.Tensor, gold: torch.Tensor, gold_lengths: torch.Tensor) -> torch.Tensor:
    """[B] bool: the decoded tokens up to their first EOS equal the gold output and its EOS.

    The gold ends with its only EOS, so matching its first gold_length tokens is matching the whole
    decoded output: no word is missing, wrong or added, and the line ended there.
    """
    width = min(decoded.shape[1], gold.shape[1])
    positions = torch.arange(width, device=gold.device)
    inside = positions[None, :] < gold_lengths[:, None]
    same = (decoded[:, :width] == gold[:, :width]) | ~inside
    return same.all(-1) & (gold_lengths <= decoded.shape[1])


@torch.inference_mode()
def full_sequence_accuracy(model: nn.Module, family: str, batches: list[Batch], eos: int,
                           device: torch.device | str) -> float:
    """Share of lines whose greedy output equals the gold output word for word, EOS included.

    Each batch decodes up to its longest gold output plus EOS: a longer decode cannot match.
    """
    correct = total = 0
    for batch in batches:
        batch = batch.to(device)
        gold, gold_lengths = gold_outputs(batch)
        decoded = decode_batch(model, family, batch, eos, int(gold_lengths.max()))
        correct += int(exact_matches(decoded, gold, gold_lengths).sum())
        total += len(gold_lengths)
    return correct / total if total else float("nan")
