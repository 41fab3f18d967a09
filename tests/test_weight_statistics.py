"""The 14 weight statistics: their values on matrices with known singular values and, on random ones,
against a transcription of Hu et al.'s definitions; their logging at every evaluation (equal to what a
checkpoint gives)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from checkpoint import load_model
from helpers import TINY_QF_RUN, eval_events, tiny_model, train
from models.weight_statistics import NAMES, weight_matrices, weight_statistics

D_MODEL, N_HEADS, D_FF = 4, 2, 8  # head matrices 2 x 4, merge 4 x 4, feed-forward 8 x 4 and 4 x 8


def with_singular_values(shape: tuple[int, int], sigma: list[float], rng: np.random.Generator) -> np.ndarray:
    """A random matrix U diag(sigma) Vᵀ of `shape` (U, V random orthonormal)."""
    rows, cols = shape
    u = np.linalg.qr(rng.normal(size=(rows, rows)))[0][:, :len(sigma)]
    v = np.linalg.qr(rng.normal(size=(cols, cols)))[0][:, :len(sigma)]
    return (u * sigma) @ v.T


def one_layer_model_with_known_matrices(rng: np.random.Generator) -> tuple[torch.nn.Module, list, list]:
    """A one-layer LM whose 9 matrices (q, k, v of 2 heads, merge, 2 feed-forward) are built from known
    singular values; returns the model, [(matrix, sigma)] and the feed-forward biases."""
    model = tiny_model(vec_dim=D_MODEL, n_heads=N_HEADS, encoder_n_layers=1, ff_multiplier=D_FF // D_MODEL)
    layer = model.trafo["encoder"].layers[0]
    attn = layer.self_attn
    # The last singular value of some matrices is below the 1e-5 floor: it counts as 0.
    known = {"q0": [2.0, 0.5], "q1": [3.0, 1e-7], "k0": [1.0, 1.0], "v0": [4.0, 2.0], "k1": [0.3, 0.1],
             "v1": [5.0, 1e-6], "merge": [3.0, 2.0, 1.0, 0.5], "ff1": [2.0, 1.5, 1.0, 1e-8], "ff2": [1.0, 1.0, 0.2, 0.1]}
    m = {name: with_singular_values((2, 4) if name[0] in "qkv" else (8, 4) if name == "ff1" else
                                    (4, 8) if name == "ff2" else (4, 4), sigma, rng) for name, sigma in known.items()}
    with torch.no_grad():
        attn.data_to_q.weight.copy_(torch.tensor(np.vstack([m["q0"], m["q1"]])))
        # the kv rows are laid out per head as [key, value]
        attn.data_to_kv.weight.copy_(torch.tensor(np.vstack([m["k0"], m["v0"], m["k1"], m["v1"]])))
        attn.multi_head_merge.weight.copy_(torch.tensor(m["merge"]))
        layer.linear1.weight.copy_(torch.tensor(m["ff1"]))
        layer.linear2.weight.copy_(torch.tensor(m["ff2"]))
        layer.linear1.bias.copy_(torch.arange(8.0) - 2)
        layer.linear2.bias.copy_(torch.tensor([10.0, -1.0, 0.5, 3.0]))
    return model, [(m[name], known[name]) for name in known], [np.arange(8.0) - 2, [10.0, -1.0, 0.5, 3.0]]


def test_statistics_of_matrices_with_known_singular_values():
    model, matrices, biases = one_layer_model_with_known_matrices(np.random.default_rng(0))
    stats = weight_statistics(model)
    assert tuple(stats) == NAMES and len(NAMES) == 14
    per_matrix = []
    for x, sigma in matrices:
        s = np.where(np.array(sigma) < 1e-5, 0.0, sigma)  # the floor
        l1, l2, trace = np.abs(x).sum(), np.sqrt(np.sum(np.square(sigma))), np.trace(x)
        per_matrix.append([l1, l2, trace, s[0], l1 / l2, trace / s[0], s.mean(), s.var(ddof=1)])
    expected = dict(zip(NAMES[:8], np.mean(per_matrix, axis=0)))
    entries = np.concatenate([x.ravel() for x, _ in matrices])
    bias_entries = np.concatenate(biases)
    expected.update(zip(NAMES[8:], [entries.mean(), lower_median(entries), entries.var(ddof=1),
                                    bias_entries.mean(), lower_median(bias_entries), bias_entries.var(ddof=1)]))
    assert lower_median(bias_entries) == 1.0  # 12 values: the lower middle one, not their mean 1.5
    for name in NAMES:
        assert stats[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-7), name


def lower_median(x: np.ndarray) -> float:
    """torch.median's median: of an even count, the lower of the two middle values."""
    return np.sort(x)[(len(x) - 1) // 2]


def anchor_statistics(model: torch.nn.Module, n_heads: int) -> dict[str, float]:
    """The 14 statistics transcribed from their definitions (Hu et al.), one matrix at a time in float64:
    every layer's per-head query, key and value matrices, attention output and feed-forward matrices;
    variances with Bessel's correction, the lower median."""
    per_matrix, entries, biases = [], [], []
    for layer in model.trafo["encoder"].layers:
        attention = layer.self_attn
        q = attention.data_to_q.weight.detach().double().numpy()
        kv = attention.data_to_kv.weight.detach().double().numpy()
        matrices = [*np.split(q, n_heads), *np.split(kv, 2 * n_heads),
                    *(m.weight.detach().double().numpy() for m in (attention.multi_head_merge, layer.linear1,
                                                                   layer.linear2))]
        for x in matrices:
            sigma = np.linalg.svd(x, compute_uv=False)
            sigma[sigma < 1e-5] = 0.0
            l1, l2, trace, spectral = np.abs(x).sum(), np.sqrt((x ** 2).sum()), np.trace(x), sigma.max()
            per_matrix.append([l1, l2, trace, spectral, l1 / l2, trace / spectral, sigma.mean(),
                               sigma.var(ddof=1)])
            entries.append(x.ravel())
        biases += [layer.linear1.bias.detach().double().numpy(), layer.linear2.bias.detach().double().numpy()]
    w, b = np.concatenate(entries), np.concatenate(biases)
    values = [*np.mean(per_matrix, axis=0), w.mean(), lower_median(w), w.var(ddof=1),
              b.mean(), lower_median(b), b.var(ddof=1)]
    return dict(zip(NAMES, values))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_statistic_is_the_anchors_formula_on_random_matrices(seed):
    model = tiny_model(seed, vec_dim=8, n_heads=2, encoder_n_layers=2).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
        # a rank-2 attention output: its other singular values fall under the 1e-5 floor
        merge = model.trafo["encoder"].layers[1].self_attn.multi_head_merge.weight
        merge.copy_(merge[:, :2] @ merge[:2, :])
    stats, expected = weight_statistics(model), anchor_statistics(model, n_heads=2)
    for name in NAMES:
        assert stats[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-6), name


def test_the_matrices_are_each_heads_query_key_and_value_and_the_feed_forward_ones():
    model, matrices, _ = one_layer_model_with_known_matrices(np.random.default_rng(1))
    stacks, biases = weight_matrices(model)
    found = [x.numpy() for stack in stacks for x in stack]
    assert len(found) == len(matrices) == 9 and len(biases) == 2
    for x, _ in matrices:  # each known matrix is one of them, as a whole
        assert sum(np.allclose(x, f, atol=1e-6) for f in found if f.shape == x.shape) == 1


def test_the_seq2seq_model_counts_its_cross_attention_and_decoder():
    model = tiny_model(not_lm=True, vec_dim=8, n_heads=2, encoder_n_layers=2, decoder_n_layers=1)
    stacks, biases = weight_matrices(model)
    # 2 encoder + 1 decoder layer; self-attention in each, cross-attention in the decoder's
    attentions = 3 + 1
    assert sum(len(s) for s in stacks) == attentions * (3 * 2 + 1) + 3 * 2 and len(biases) == 3 * 2
    assert all(np.isfinite(v) for v in weight_statistics(model).values())


@pytest.fixture(scope="module")
def logged_run(data_dir, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("weights")
    assert train(data_dir, *TINY_QF_RUN, "--max_train_steps", "4", "--eval_every", "2", "--save_every", "2",
                 "--save_dir", str(out), "--save_prefix", "run") == 0
    return os.path.join(out, "run")


def test_every_evaluation_logs_them_as_a_checkpoint_gives_them(logged_run):
    logged = eval_events(logged_run)
    assert sorted(logged) == [0, 2, 4]
    for step, event in logged.items():
        expected = weight_statistics(load_model(os.path.join(logged_run, f"checkpoint_{step}.pth")).model)
        assert {name: event[name] for name in NAMES} == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert logged[0]["weights/l2"] != logged[4]["weights/l2"]  # they follow training


def test_no_weight_stats_logs_none(data_dir, tmp_path):
    assert train(data_dir, *TINY_QF_RUN, "--max_train_steps", "2", "--eval_every", "1", "--no_weight_stats",
                 "--save_dir", str(tmp_path), "--save_prefix", "run") == 0
    logged = eval_events(tmp_path / "run")
    assert sorted(logged) == [0, 1, 2]
    assert not any(name.startswith("weights/") for event in logged.values() for name in event)


def test_a_run_resumes_with_the_statistics_turned_off(data_dir, tmp_path):
    """The statistics change nothing the run computes: turning them off is no reason to refuse --resume."""
    flags = [*TINY_QF_RUN, "--max_train_steps", "2", "--eval_every", "1", "--save_every", "1",
             "--save_dir", str(tmp_path), "--save_prefix", "run"]
    assert train(data_dir, *flags) == 0
    os.remove(tmp_path / "run" / "checkpoint_2.pth")  # as if stopped after step 1
    assert train(data_dir, *flags, "--no_weight_stats", "--resume") == 0
    logged = eval_events(tmp_path / "run")
    assert ["weights/l1" in logged[step] for step in (0, 1, 2)] == [True, True, False]
