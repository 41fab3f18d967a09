"""Seq2seq objective: teacher-forced decoder loss on the output sentence + EOS."""
from __future__ import annotations

import torch

from collate import IGNORE, Batch
from interfaces.batch_views import decoder_eval_pos, decoder_view, source_view
from interfaces.output import LMOutput, logits_at, objective_output, token_losses
from models import TransformerEncDec


class Seq2SeqInterface:
    """Encodes `input . marker`, decodes `[SOS] output` against `output EOS`.

    All decoder targets are second-half tokens (there is no loss on the input); `eval_logits`
    are the decoder logits that predict output word `out_index` (eval_pos - prefix_len - 1).
    """

    def __init__(self, model: TransformerEncDec, label_smoothing: float = 0.0):
        self.model = model
        self.label_smoothing = label_smoothing

    def __call__(self, batch: Batch) -> LMOutput:
        source, source_lengths = source_view(batch, with_sos=False)
        target_in, targets, target_lengths = decoder_view(batch)
        logits = self.model(source, source_lengths, target_in, target_lengths)
        plain, trained = token_losses(logits, targets, self.label_smoothing)
        real = targets != IGNORE
        return objective_output(plain, trained, real, torch.zeros_like(real), real, logits,
                                logits_at(logits, decoder_eval_pos(batch)))
