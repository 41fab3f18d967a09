"""Every layer's hidden states and attention weights, recorded by the real forward pass on request."""
from __future__ import annotations

import pytest
import torch

from helpers import BATCH_LINES, batch_of, tiny_model, vocab_of
from interfaces.batch_views import decoder_view, source_view
from layers import Internals

VOCAB = vocab_of(BATCH_LINES)
N_LAYERS = 2


def lm_batch():
    return batch_of(BATCH_LINES, VOCAB)


@pytest.mark.parametrize("pack", [False, True])
def test_the_lm_records_each_layer_and_computes_what_it_computes_without(pack):
    model = tiny_model(0, len(VOCAB), encoder_n_layers=N_LAYERS, tied_embedding=True)
    batch = lm_batch()
    internals = Internals()
    with torch.no_grad():
        plain = model(batch.inputs, batch.lengths, pack=pack)
        logits = model(batch.inputs, batch.lengths, pack=pack, internals=internals)
        embedded = model.embed(batch.inputs)
    real = batch.targets != -100
    torch.testing.assert_close(logits[real], plain[real], atol=1e-5, rtol=1e-5)
    assert len(internals.hidden_states) == N_LAYERS + 1 and len(internals.attentions) == N_LAYERS
    B, T = batch.inputs.shape
    assert all(h.shape == (B, T, 32) for h in internals.hidden_states)
    torch.testing.assert_close(internals.hidden_states[0][real], embedded[real])
    # the last layer's states are what the output map reads
    torch.testing.assert_close(model.output(internals.hidden_states[-1])[real], logits[real])
    for weights in internals.attentions:
        assert weights.shape == (B, 4, T, T)
        rows = weights[real[:, None, :, None].expand_as(weights)].view(-1, T)
        torch.testing.assert_close(rows.sum(-1), torch.ones(len(rows)))
        future = torch.ones(T, T, dtype=torch.bool).triu(1)
        assert (weights[:, :, future] == 0).all()  # causal
        padded_keys = ~real[:, None, None, :].expand_as(weights)
        assert (weights[padded_keys] == 0).all()


def test_packed_and_padded_passes_record_the_same_real_states():
    model = tiny_model(1, len(VOCAB), encoder_n_layers=N_LAYERS)
    batch = lm_batch()
    recorded = {}
    for pack in (False, True):
        recorded[pack] = Internals()
        with torch.no_grad():
            model(batch.inputs, batch.lengths, pack=pack, internals=recorded[pack])
    real = batch.targets != -100
    for padded, packed in zip(recorded[False].hidden_states, recorded[True].hidden_states):
        torch.testing.assert_close(packed[real], padded[real], atol=1e-5, rtol=1e-5)
    for padded, packed in zip(recorded[False].attentions, recorded[True].attentions):
        torch.testing.assert_close(packed.transpose(1, 2)[real], padded.transpose(1, 2)[real],
                                   atol=1e-6, rtol=1e-5)  # the rows of real queries


def test_the_classifier_and_the_seq2seq_model_record_their_layers():
    batch = lm_batch()
    classifier = tiny_model(0, len(VOCAB), mode="enc", encoder_n_layers=N_LAYERS)
    internals = Internals()
    tokens, lengths = source_view(batch, with_sos=True)
    with torch.no_grad():
        classifier(tokens, lengths, internals=internals)
    assert len(internals.hidden_states) == N_LAYERS + 1 and len(internals.attentions) == N_LAYERS

    seq2seq = tiny_model(0, len(VOCAB), not_lm=True, encoder_n_layers=N_LAYERS, decoder_n_layers=1)
    internals = Internals()
    source, source_lengths = source_view(batch, with_sos=False)
    target_in, _, target_lengths = decoder_view(batch)
    with torch.no_grad():
        plain = seq2seq(source, source_lengths, target_in, target_lengths)
        logits = seq2seq(source, source_lengths, target_in, target_lengths, internals=internals)
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)
    # the encoder's input and layers, then the decoder's
    assert len(internals.hidden_states) == (N_LAYERS + 1) + (1 + 1)
    assert [a.shape[-1] for a in internals.attentions] == [source.shape[1]] * N_LAYERS + [target_in.shape[1]]
