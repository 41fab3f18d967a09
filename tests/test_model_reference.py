"""Conformance with a checkpoint trained by the research code (skipped without the reference files)."""
import json

import numpy as np
import pytest
import torch

from checkpoint import load_model_weights
from collate import IGNORE
from helpers import REFERENCE, REFERENCE_CHECKPOINT, batch_of, lines
from interfaces import LanguageModelInterface
from transformer_helpers import ModelConfig, create_lm
from vocabulary import WordVocabulary

pytestmark = pytest.mark.skipif(not REFERENCE_CHECKPOINT.exists(),
                                reason=f"reference material not found at {REFERENCE}")


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((REFERENCE / "tiny_qf_expected.json").read_text())


@pytest.fixture(scope="module")
def vocab(expected) -> WordVocabulary:
    vocab = WordVocabulary(expected["vocab"])
    assert vocab.words == expected["vocab"]  # the research ids: <pad>, then the sorted words
    return vocab


@pytest.fixture(scope="module")
def interface(vocab):
    args = json.loads((REFERENCE / "tiny_qf_args.json").read_text())
    fields = ("vec_dim", "n_heads", "ff_multiplier", "encoder_n_layers", "dropout",
              "tied_embedding")
    cfg = ModelConfig(**{name: args[name] for name in fields})
    model = create_lm(cfg, len(vocab))
    load_model_weights(model, REFERENCE_CHECKPOINT)
    return LanguageModelInterface(model.eval())


def val_lines() -> list[str]:
    return lines(REFERENCE / "question.val")


def test_loss_and_logits_of_the_first_16_val_lines(interface, vocab, expected):
    batch = batch_of(val_lines()[:16], vocab)
    with torch.no_grad():
        out = interface(batch)
    assert out.loss.item() == pytest.approx(expected["val16_loss"], abs=1e-5)
    # research logits are time-major [T, B, V+2] over the same inputs (SOS + words, no EOS)
    research = torch.from_numpy(np.load(REFERENCE / "tiny_qf_val16_logits.npy")).transpose(0, 1)
    assert research.shape == out.logits.shape
    real = batch.targets != IGNORE
    torch.testing.assert_close(out.logits[real], research[real], atol=5e-5, rtol=0)


def test_main_auxiliary_accuracy_on_question_val_is_perfect(interface, vocab, expected):
    quest = [line for line in val_lines() if line.split("\t")[0].endswith("quest")]
    correct = 0
    for start in range(0, len(quest), 250):
        batch = batch_of(quest[start:start + 250], vocab)
        with torch.no_grad():
            eval_logits = interface(batch).eval_logits
        guess = eval_logits.masked_fill(~batch.eval_candidates, float("-inf")).argmax(-1)
        correct += (guess == batch.eval_gold).sum().item()
    assert correct / len(quest) == expected["val_aux"] == 1.0
