"""The transformer LM: size, names, init, causality, padding, and SDPA against plain softmax."""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_model as tiny_lm
from transformer_helpers import ModelConfig, create_lm
from util import HierGenError


def random_tokens(batch: int, length: int, n_tokens: int = 13, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_tokens, (batch, length), generator=generator)


def test_default_config_has_the_research_parameter_count():
    model = create_lm(ModelConfig(tied_embedding=True), 69)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 18_938_439


def test_state_dict_uses_the_research_names():
    d, layer = 32, "trafo.encoder.layers.1."
    shapes = {k: list(v.shape) for k, v in tiny_lm(tied_embedding=True).state_dict().items()}
    assert shapes["int_seq"] == [5000] and shapes["pos.pe"] == [1, 5000, d]
    assert shapes["input_embedding.weight"] == [13, d] and shapes["output_map.bias"] == [13]
    assert shapes[layer + "self_attn.data_to_q.weight"] == [d, d]
    assert shapes[layer + "self_attn.data_to_kv.weight"] == [2 * d, d]
    assert shapes[layer + "self_attn.multi_head_merge.weight"] == [d, d]
    assert shapes[layer + "linear1.weight"] == [4 * d, d]
    assert shapes[layer + "linear2.weight"] == [d, 4 * d]
    assert {layer + f"norm{i}.{p}" for i in (1, 2) for p in ("weight", "bias")} <= shapes.keys()
    assert len(shapes) == 4 + 2 * 11  # 11 tensors per layer
    untied = tiny_lm(tied_embedding=False).state_dict()
    assert list(untied["output_map.weight"].shape) == [13, d]


def test_buffers_hold_positions_and_the_sinusoid_table():
    model = tiny_lm()
    assert torch.equal(model.int_seq, torch.arange(5000))
    pe, pos, i = model.pos.pe[0], 7, 3
    angle = pos / 10000 ** (2 * i / 32)
    assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_init_follows_the_research_scheme():
    model = tiny_lm(vec_dim=64, ff_multiplier=2)
    layer = model.trafo["encoder"].layers[0]

    def xavier(fan_in, fan_out, gain=1.0):
        return gain * math.sqrt(6 / (fan_in + fan_out))

    # untied output map: PyTorch's Linear default
    assert model.output_map.weight.abs().max() <= 1 / math.sqrt(64)
    assert layer.linear1.weight.abs().max() <= xavier(64, 128, math.sqrt(2))
    assert layer.linear1.weight.abs().max() > xavier(64, 128)  # the ReLU gain is really applied
    assert layer.self_attn.data_to_kv.weight.abs().max() <= xavier(64, 64)
    assert layer.self_attn.data_to_kv.weight.abs().max() > 0.9 * xavier(64, 64)
    assert torch.equal(layer.norm1.weight, torch.ones(64))
    assert torch.equal(layer.norm2.bias, torch.zeros(64))
    assert torch.equal(tiny_lm(tied_embedding=True).output_map.bias, torch.zeros(13))


def test_changing_a_later_token_never_changes_earlier_logits():
    model = tiny_lm()
    tokens = random_tokens(3, 9)
    changed = tokens.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 13
    with torch.no_grad():
        before, after = model(tokens), model(changed)
    assert torch.equal(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_padded_batch_gives_each_examples_unpadded_result():
    model = tiny_lm()
    lengths = torch.tensor([9, 4, 6])
    tokens = random_tokens(3, 9)
    tokens[1, 4:] = 0
    tokens[2, 6:] = 0
    with torch.no_grad():
        batched = model(tokens, lengths)
        for row, n in enumerate(lengths.tolist()):
            alone = model(tokens[row:row + 1, :n])
            torch.testing.assert_close(batched[row:row + 1, :n], alone, atol=1e-5, rtol=0)


def reference_forward(model, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The LM written out with an explicit masked softmax, reading the model's weights."""
    B, T = tokens.shape
    d = model.d_model
    x = model.input_embedding.weight[tokens] * math.sqrt(d) + model.pos.pe[0, :T] * model.pos_scale
    key_is_real = torch.arange(T)[None, :] < lengths[:, None]
    allowed = torch.ones(T, T).tril().bool()[None] & key_is_real[:, None, :]
    for layer in model.trafo["encoder"].layers:
        att = layer.self_attn
        H, dh = att.n_heads, att.d_head
        q = (x @ att.data_to_q.weight.T).view(B, T, H, dh)
        kv = (x @ att.data_to_kv.weight.T).view(B, T, H, 2, dh)
        k, v = kv[..., 0, :], kv[..., 1, :]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(dh)
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        y = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(B, T, d)
        x = layer.norm1(x + y @ att.multi_head_merge.weight.T)
        ff = torch.relu(x @ layer.linear1.weight.T + layer.linear1.bias) @ layer.linear2.weight.T
        x = layer.norm2(x + ff + layer.linear2.bias)
    return x @ model.input_embedding.weight.T + model.output_map.bias


def test_sdpa_path_equals_an_explicit_softmax_reference():
    model = tiny_lm(tied_embedding=True, pos_scale=0.5)
    tokens, lengths = random_tokens(4, 10), torch.tensor([10, 3, 7, 1])
    with torch.no_grad():
        ours, reference = model(tokens, lengths), reference_forward(model, tokens, lengths)
    real = torch.arange(10)[None, :] < lengths[:, None]
    torch.testing.assert_close(ours[real], reference[real], atol=1e-5, rtol=0)


def test_positional_encoding_can_be_scaled_or_removed():
    tokens = random_tokens(2, 6)
    plain = tiny_lm(no_pos_enc=True)
    assert "pos.pe" not in plain.state_dict()
    zero_scaled = tiny_lm(pos_scale=0.0)
    with torch.no_grad():
        torch.testing.assert_close(plain(tokens), zero_scaled(tokens))
        assert not torch.allclose(tiny_lm()(tokens), plain(tokens))


def test_ff_multiplier_sets_the_feed_forward_width():
    layer = tiny_lm(ff_multiplier=3).trafo["encoder"].layers[0]
    assert layer.linear1.out_features == 96 and layer.linear2.in_features == 96


def test_dropout_is_active_in_training_only():
    model, tokens = tiny_lm(dropout=0.3), random_tokens(2, 6)
    with torch.no_grad():
        assert torch.equal(model(tokens), model(tokens))
        model.train()
        assert not torch.equal(model(tokens), model(tokens))


@pytest.mark.parametrize("bad", [dict(vec_dim=30, n_heads=4), dict(encoder_n_layers=0),
                                 dict(dropout=1.0)])
def test_invalid_configuration_is_a_user_error(bad):
    with pytest.raises(HierGenError):
        ModelConfig(**bad)


def test_gradients_reach_every_parameter():
    model = tiny_lm(tied_embedding=True).train()
    logits = model(random_tokens(2, 5))
    F.cross_entropy(logits.flatten(0, 1), random_tokens(2, 5).flatten()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
