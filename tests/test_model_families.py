"""The other model families: seq2seq (--not_lm), classifier (--mode enc), gated LM (--gated-model)."""
import copy

import pytest
import torch

from checkpoint import load_model_weights, research_state_dict
from collate import IGNORE
from evaluation import evaluate
from helpers import BATCH_LINES as LINES, TINY_MODEL, batch_of, tiny_model, vocab_of
from interfaces import (ClassifierInterface, GatedLMInterface, LanguageModelInterface, ObjectiveConfig,
                        Seq2SeqInterface, make_objective)
from interfaces.batch_views import decoder_view, source_view
from models.head_gates import gate_openness, head_gates, l0_norm, prune_heads
from transformer_helpers import ModelConfig
from util import HierGenError

FAMILY_MODEL = dict(n_heads=2, dropout=0.0, tied_embedding=True)  # on top of helpers.TINY_MODEL
FAMILIES = {
    "lm": dict(),
    "gated": dict(gated_model=True),
    "enc_dec": dict(not_lm=True, decoder_n_layers=1),
    "enc": dict(mode="enc"),
    "enc_causal": dict(mode="enc", causal_encoder=True),
}
INTERFACES = {"lm": LanguageModelInterface, "gated": GatedLMInterface, "enc_dec": Seq2SeqInterface,
              "enc": ClassifierInterface, "enc_causal": ClassifierInterface}
VOCAB = vocab_of(LINES)


def make_batch(lines=LINES, out_index: int = 0):
    return batch_of(lines, VOCAB, out_index)


def model_config(family: str) -> ModelConfig:
    return ModelConfig(**{**TINY_MODEL, **FAMILY_MODEL, **FAMILIES[family]})


def build(family: str, seed: int = 0, objective: ObjectiveConfig = ObjectiveConfig()):
    """A fresh model of `family` in training mode, and its objective."""
    model = tiny_model(seed, len(VOCAB), **{**FAMILY_MODEL, **FAMILIES[family]}).train()
    return model, make_objective(model_config(family), model, objective)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_gets_its_objective_and_output_shapes(family):
    model, interface = build(family)
    assert type(interface) is INTERFACES[family]
    batch = make_batch()
    out = interface(batch)
    B, V = len(LINES), len(VOCAB) + 2
    expected_logits = {"enc_dec": (B, int((batch.lengths - batch.prefix_len - 1).max()), V),
                       "enc": (B, V), "enc_causal": (B, V)}.get(family, (*batch.inputs.shape, V))
    assert out.logits.shape == expected_logits
    assert out.eval_logits.shape == (B, V)
    assert (out.l0 is not None) == (family == "gated")
    assert torch.isfinite(out.loss) and out.loss.ndim == 0


@pytest.mark.parametrize("family", ["gated", "enc_dec", "enc", "enc_causal"])
def test_overfitting_a_few_lines_gets_every_line_right(family):
    model, interface = build(family)
    batch = make_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(300):
        loss = interface(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result = evaluate(interface, [batch], "cpu")
    # The LM's first half is not predictable (the lines share prefixes); its output half is.
    assert (result.second_half if family == "gated" else result.loss) < 0.05
    assert result.n_targets == 5 and result.n_correct == 5


@pytest.mark.parametrize("family", FAMILIES)
def test_a_padded_batch_gives_each_example_its_own_result(family):
    model, interface = build(family, seed=1)
    model.eval()
    batch = make_batch()
    with torch.no_grad():
        together = interface(batch)
        for i, line in enumerate(LINES):
            alone = interface(make_batch([line]))
            n = alone.logits.shape[1] if alone.logits.ndim == 3 else None
            torch.testing.assert_close(together.logits[i, :n], alone.logits[0])
            torch.testing.assert_close(together.eval_logits[i], alone.eval_logits[0])


def test_batch_views_cut_source_and_decoder_sequences():
    batch = make_batch()
    row = 2
    source, output = (part.split() for part in LINES[row].split("\t"))
    tokens, lengths = source_view(batch, with_sos=False)
    assert tokens[row, :lengths[row]].tolist() == VOCAB.ids(source)
    assert (tokens[row, lengths[row]:] == 0).all()
    with_sos, sos_lengths = source_view(batch, with_sos=True)
    assert with_sos[row, :sos_lengths[row]].tolist() == [VOCAB.sos] + VOCAB.ids(source)
    target_in, targets, dec_lengths = decoder_view(batch)
    assert dec_lengths[row] == len(output) + 1
    assert target_in[row, :dec_lengths[row]].tolist() == [VOCAB.sos] + VOCAB.ids(output)
    assert targets[row, :dec_lengths[row]].tolist() == VOCAB.ids(output) + [VOCAB.eos]
    assert (targets[row, dec_lengths[row]:] == IGNORE).all()


@pytest.mark.parametrize("out_index", [0, 2])
def test_seq2seq_eval_logits_are_the_decoder_logits_predicting_the_target_word(out_index):
    model, interface = build("enc_dec")
    batch = make_batch(out_index=out_index)
    out = interface(batch)
    _, targets, _ = decoder_view(batch)
    for row in range(len(LINES)):
        if batch.eval_pos[row] < 0:
            assert torch.equal(out.eval_logits[row], torch.zeros_like(out.eval_logits[row]))
            continue
        assert torch.equal(out.eval_logits[row], out.logits[row, out_index])
        assert targets[row, out_index] == batch.eval_gold[row]


def test_seq2seq_loss_covers_the_output_and_eos_only():
    _, interface = build("enc_dec")
    out = interface(make_batch())
    n_output = sum(len(line.split("\t")[1].split()) + 1 for line in LINES)
    assert out.n_tokens == out.second_half_tokens == n_output
    assert out.first_half_tokens == 0 and out.first_half_loss_sum == 0
    torch.testing.assert_close(out.loss.detach(), out.loss_sum / out.n_tokens)


def test_classifier_loss_counts_the_lines_with_a_target():
    _, interface = build("enc")
    batch = make_batch()
    out = interface(batch)
    has_target = batch.eval_pos >= 0
    expected = torch.nn.functional.cross_entropy(out.logits[has_target], batch.eval_gold[has_target])
    torch.testing.assert_close(out.loss, expected)
    assert out.n_tokens == out.second_half_tokens == has_target.sum() == 5
    assert out.first_half_tokens == 0


def test_changing_an_output_token_changes_neither_encoder_nor_earlier_decoder_states():
    model, interface = build("enc_dec")
    model.eval()
    batch = make_batch()
    changed = copy.deepcopy(batch)
    row, k = 2, 3  # output word k sits at input position prefix_len + 2 + k
    changed.inputs[row, batch.prefix_len[row] + 2 + k] = VOCAB.ids(["yak"])[0]
    with torch.no_grad():
        before, after = interface(batch).logits, interface(changed).logits
        encoded = [model.encode(*source_view(b, with_sos=False)) for b in (batch, changed)]
    # decoder position j reads output word j - 1, so word k first reaches position k + 1
    assert torch.equal(before[row, :k + 1], after[row, :k + 1])
    assert not torch.allclose(before[row, k + 1], after[row, k + 1])
    assert torch.equal(encoded[0], encoded[1])


@pytest.mark.parametrize("causal", [True, False])
def test_causal_classifier_encoder_never_looks_ahead(causal):
    model, _ = build("enc_causal" if causal else "enc")
    model.eval()
    tokens = torch.tensor([[VOCAB.sos, *VOCAB.ids("the yak does swim . quest".split())]])
    lengths = torch.tensor([tokens.shape[1]])
    changed = tokens.clone()
    changed[0, 3] = VOCAB.ids(["don't"])[0]
    with torch.no_grad():
        before, after = model.encode(tokens, lengths), model.encode(changed, lengths)
    assert torch.equal(before[0, :3], after[0, :3]) == causal
    assert not torch.allclose(before[0, 3:], after[0, 3:])


def test_gated_lm_eval_gates_are_deterministic_and_training_gates_are_sampled():
    model, interface = build("gated")
    batch = make_batch()
    model.eval()
    with torch.no_grad():
        assert torch.equal(interface(batch).logits, interface(batch).logits)
    for gate in head_gates(model):
        gate.log_alpha.data.fill_(0.0)  # half open: samples spread over [0, 1]
    model.train()
    with torch.no_grad():
        assert not torch.equal(interface(batch).logits, interface(batch).logits)


def test_gated_lm_loss_adds_the_weighted_l0_penalty():
    model, interface = build("gated", objective=ObjectiveConfig(gate_l0_penalty=0.5))
    assert interface.l0_penalty == 0.5
    out = interface(make_batch())
    l0 = l0_norm(model)
    assert 0 < l0 <= 2 * 2  # two layers of two heads
    torch.testing.assert_close(out.l0, l0.detach())
    torch.testing.assert_close(out.loss, out.loss_sum / out.n_tokens + 0.5 * l0)
    out.loss.backward()
    assert all(gate.log_alpha.grad.abs().sum() > 0 for gate in head_gates(model))


def test_plain_lm_has_no_gate_keys_and_gated_lm_names_them_per_layer():
    plain, _ = build("lm")
    gated, _ = build("gated")
    assert not [k for k in plain.state_dict() if "gate" in k]
    extra = sorted(set(gated.state_dict()) - set(plain.state_dict()))
    assert extra == [f"trafo.encoder.layers.{i}.self_attn.gate.{name}"
                     for i in range(2) for name in ("active", "log_alpha")]


def test_a_fresh_gated_lm_computes_what_the_plain_lm_it_loads_computes():
    plain, plain_interface = build("lm", seed=3)
    gated, gated_interface = build("gated", seed=4)
    load_model_weights(gated, {"model_state_dict": research_state_dict(plain)})
    plain.eval(), gated.eval()
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(gated_interface(batch).logits, plain_interface(batch).logits)
    assert torch.equal(gate_openness(gated), torch.ones(2, 2))


def test_pruning_removes_exactly_the_head_contribution_and_survives_a_checkpoint():
    model, interface = build("gated", seed=2)
    layer, head, d_head = 1, 0, 16
    head_gates(model)[layer].log_alpha.data[head] = 0.0  # openness 0.5: still contributes
    reference = copy.deepcopy(model)
    merge = reference.trafo["encoder"].layers[layer].self_attn.multi_head_merge
    merge.weight.data[:, head * d_head:(head + 1) * d_head] = 0.0
    batch = make_batch()
    model.eval(), reference.eval()
    with torch.no_grad():
        assert not torch.allclose(interface(batch).logits, make_objective(model_config("gated"), reference, ObjectiveConfig())(batch).logits)

    closed = prune_heads(model, threshold=0.6)
    expected = torch.zeros(2, 2, dtype=torch.bool)
    expected[layer, head] = True
    assert torch.equal(closed, expected)
    assert gate_openness(model)[layer, head] == 0
    with torch.no_grad():
        torch.testing.assert_close(interface(batch).logits, make_objective(model_config("gated"), reference, ObjectiveConfig())(batch).logits)
    model.train()
    assert head_gates(model)[layer]()[head] == 0  # sampled gates stay closed too

    restored, restored_interface = build("gated", seed=9)
    load_model_weights(restored, {"model_state_dict": research_state_dict(model)})
    restored.eval(), model.eval()
    with torch.no_grad():
        assert torch.equal(restored_interface(batch).logits, interface(batch).logits)
    assert torch.equal(gate_openness(restored), gate_openness(model))


@pytest.mark.parametrize("family", ["enc_dec", "enc"])
def test_non_lm_checkpoints_round_trip(family):
    model, interface = build(family, seed=0)
    other, other_interface = build(family, seed=1)
    model.eval(), other.eval()
    batch = make_batch()
    load_model_weights(other, {"model_state_dict": research_state_dict(model)})
    with torch.no_grad():
        assert torch.equal(other_interface(batch).logits, interface(batch).logits)


def test_loading_another_family_is_a_one_line_error():
    lm, _ = build("lm")
    seq2seq, _ = build("enc_dec")
    with pytest.raises(HierGenError, match="missing keys trafo.decoder") as error:
        load_model_weights(seq2seq, {"model_state_dict": research_state_dict(lm)})
    assert "\n" not in str(error.value)
    gated, _ = build("gated")
    with pytest.raises(HierGenError, match="unexpected keys .*gate"):
        load_model_weights(lm, {"model_state_dict": research_state_dict(gated)})


@pytest.mark.parametrize("flags, message", [
    (dict(causal_encoder=True), "--causal_encoder applies to the classifier"),
    (dict(not_lm=True, causal_encoder=True), "--causal_encoder applies to the classifier"),
    (dict(decoder_n_layers=3), "--decoder_n_layers applies to the seq2seq"),
    (dict(mode="enc", decoder_n_layers=3), "--decoder_n_layers applies to the seq2seq"),
    (dict(mode="enc", not_lm=True), "different models"),
    (dict(not_lm=True, gated_model=True), "--gated-model applies to the LM only"),
    (dict(mode="enc", gated_model=True), "--gated-model applies to the LM only"),
    (dict(mode="dec"), "--mode 'dec': expected one of enc_dec, enc"),
    (dict(not_lm=True, decoder_n_layers=0), "decoder_n_layers must be at least 1"),
])
def test_impossible_combinations_are_one_line_errors(flags, message):
    with pytest.raises(HierGenError, match=message) as error:
        ModelConfig(**flags)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("family, objective, message", [
    ("enc_dec", dict(is_prefix_lm=True), "--is_prefix_lm applies to the LM only"),
    ("enc", dict(is_prefix_lm=True), "--is_prefix_lm applies to the LM only"),
    ("lm", dict(gate_l0_penalty=0.1), "--gate_l0_penalty applies to the gated LM"),
    ("gated", dict(gate_l0_penalty=-1.0), "finite number >= 0"),
    ("lm", dict(label_smoothing=1.0), "--label-smoothing must be in"),
])
def test_objective_settings_the_family_cannot_use_are_refused(family, objective, message):
    model, _ = build(family)
    with pytest.raises(HierGenError, match=message):
        make_objective(model_config(family), model, ObjectiveConfig(**objective))
