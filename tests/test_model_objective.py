"""The LM and prefix-LM objectives: which tokens count, exact sums, and the task logits."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from collate import IGNORE, TokenBatch
from helpers import BATCH_LINES, batch_of, tiny_model, vocab_of
from interfaces import LanguageModelInterface

LINES = BATCH_LINES[:3]  # two questions and a declarative


def make_batch():
    vocab = vocab_of(LINES)
    return batch_of(LINES, vocab), len(vocab)


class FixedLogits(nn.Module):
    """A stand-in model whose logits are one trainable tensor, to inspect gradients per position."""

    def __init__(self, shape):
        super().__init__()
        self.logits = nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(0)))

    def forward(self, inputs, lengths):
        return self.logits


def test_lm_loss_is_the_token_mean_over_all_real_targets():
    batch, n_words = make_batch()
    out = LanguageModelInterface(tiny_model(0, n_words, vec_dim=16, n_heads=2, encoder_n_layers=1))(batch)
    expected = F.cross_entropy(out.logits.flatten(0, 1), batch.targets.flatten(),
                               ignore_index=IGNORE)
    torch.testing.assert_close(out.loss, expected)
    assert out.n_tokens == (batch.targets != IGNORE).sum() == batch.lengths.sum()
    torch.testing.assert_close(out.loss_sum / out.n_tokens, out.loss.detach())


def test_halves_split_at_the_marker_and_add_up():
    batch, _ = make_batch()
    out = LanguageModelInterface(FixedLogits((*batch.targets.shape, 22)))(batch)
    # first half: input words incl. '.' and the marker; second half: output words and EOS
    assert out.first_half_tokens.item() == sum(len(line.split("\t")[0].split()) for line in LINES)
    n_output_words = sum(len(line.split("\t")[1].split()) for line in LINES)
    assert out.second_half_tokens.item() == n_output_words + len(LINES)  # + EOS
    assert out.first_half_tokens + out.second_half_tokens == out.n_tokens
    torch.testing.assert_close(out.first_half_loss_sum + out.second_half_loss_sum, out.loss_sum)


def test_prefix_lm_loss_counts_only_the_output_half():
    batch, _ = make_batch()
    model = FixedLogits((*batch.targets.shape, 22))
    out = LanguageModelInterface(model, prefix_lm=True)(batch)
    torch.testing.assert_close(out.loss.detach(), out.second_half_loss_sum / out.second_half_tokens)
    assert out.n_tokens == out.second_half_tokens
    out.loss.backward()
    has_grad = model.logits.grad.abs().sum(-1) > 0
    after_marker = torch.arange(batch.targets.shape[1]) > batch.prefix_len[:, None]
    second = (batch.targets != IGNORE) & after_marker
    assert torch.equal(has_grad, second)


def test_label_smoothing_changes_the_training_loss_only():
    batch, _ = make_batch()
    model = FixedLogits((*batch.targets.shape, 22))
    plain = LanguageModelInterface(model)(batch)
    smoothed = LanguageModelInterface(model, label_smoothing=0.1)(batch)
    expected = F.cross_entropy(model.logits.flatten(0, 1), batch.targets.flatten(),
                               ignore_index=IGNORE, label_smoothing=0.1)
    torch.testing.assert_close(smoothed.loss, expected)
    assert not torch.allclose(smoothed.loss, plain.loss)
    torch.testing.assert_close(smoothed.loss_sum, plain.loss_sum)


def test_eval_logits_are_read_at_the_eval_position():
    batch, _ = make_batch()
    out = LanguageModelInterface(FixedLogits((*batch.targets.shape, 22)))(batch)
    assert batch.eval_pos.tolist()[1] == -1
    for row in (0, 2):
        assert torch.equal(out.eval_logits[row], out.logits[row, batch.eval_pos[row]])
        # the logits there predict the first output word: the fronted auxiliary
        assert batch.targets[row, batch.eval_pos[row]] == batch.eval_gold[row]
    assert torch.equal(out.eval_logits[1], torch.zeros(22))


def test_the_lm_objective_trains_on_tokens_alone():
    batch, _ = make_batch()
    tokens = TokenBatch(batch.inputs, batch.targets, batch.lengths, batch.prefix_len)
    objective = LanguageModelInterface(FixedLogits((*batch.targets.shape, 22)), prefix_lm=True)
    alone, full = objective(tokens), objective(batch)
    assert alone.eval_logits is None
    torch.testing.assert_close(alone.loss, full.loss)
    torch.testing.assert_close(alone.second_half_loss_sum, full.second_half_loss_sum)
