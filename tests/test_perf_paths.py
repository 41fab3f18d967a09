"""The fast paths compute what the plain ones do: packed tokens, fused AdamW with clipping folded
in, and evaluation at any batch size."""
import math

import pytest
import torch

from data_utils.config import DataConfig
from data_utils.load import load_task
from evaluation import evaluate, make_eval_batches
from layers import Packing
from training_utils import clipped_step, make_optimizer
from transformer_helpers import ModelConfig, create_lm, create_model_interface

LENGTHS = torch.tensor([9, 4, 6, 1])


def tiny_lm(seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = dict(vec_dim=32, n_heads=4, encoder_n_layers=2, tied_embedding=True)
    return create_lm(ModelConfig(**{**cfg, **overrides}), 11)


def padded_tokens(seed: int = 1) -> torch.Tensor:
    tokens = torch.randint(1, 13, (len(LENGTHS), int(LENGTHS.max())),
                           generator=torch.Generator().manual_seed(seed))
    return tokens.masked_fill(torch.arange(tokens.shape[1])[None, :] >= LENGTHS[:, None], 0)


def test_packing_round_trips_the_real_positions():
    packing = Packing.from_lengths(LENGTHS, 9)
    x = torch.randn(4, 9, 3)
    real = torch.arange(9)[None, :] < LENGTHS[:, None]
    assert torch.equal(packing.pack(x), x[real])
    assert torch.equal(packing.unpack(packing.pack(x)), x * real[..., None])


@pytest.mark.parametrize("gated", [False, True])
def test_packed_forward_and_backward_equal_the_padded_ones(gated):
    model = tiny_lm(gated_model=gated).eval()  # eval: no dropout, so both paths see the same net
    tokens, real = padded_tokens(), torch.arange(9)[None, :] < LENGTHS[:, None]
    ff_inputs = []
    model.trafo["encoder"].layers[0].linear1.register_forward_hook(
        lambda module, inputs, output: ff_inputs.append(tuple(inputs[0].shape)))
    results = {}
    for pack in (False, None):  # None: the default, which packs on the CPU
        model.zero_grad()
        logits = model(tokens, LENGTHS, pack=pack)
        (logits[real] ** 2).mean().backward()
        results[pack] = logits[real], {n: p.grad.clone() for n, p in model.named_parameters()}
    assert ff_inputs == [(4, 9, 32), (int(LENGTHS.sum()), 32)]  # the packed pass skips padding
    torch.testing.assert_close(results[None][0], results[False][0], atol=1e-5, rtol=0)
    for name, grad in results[False][1].items():
        torch.testing.assert_close(results[None][1][name], grad, atol=1e-5, rtol=1e-5, msg=name)


def test_packed_training_pass_drops_out_and_gives_pads_zero_logits():
    model = tiny_lm(dropout=0.3).train()
    tokens = padded_tokens()
    logits = model(tokens, LENGTHS, pack=True)
    assert not torch.equal(logits, model(tokens, LENGTHS, pack=True))
    assert torch.equal(logits[1, 4:], torch.zeros_like(logits[1, 4:]))


# No clipping; a bound far below the norm, where the clipped gradients are smaller than eps and a
# wrong clip factor would show in the update (Adam is otherwise blind to scale); a bound not reached.
@pytest.mark.parametrize("max_norm", [0.0, 1e-9, 1e3])
def test_fused_adamw_with_folded_clipping_equals_clip_grad_norm_and_plain_adamw(max_norm):
    models = [tiny_lm(), tiny_lm()]
    fused = make_optimizer(models[0], lr=1e-3, weight_decay=0.1)
    # The same groups (decayed matrices, undecayed vectors), built by hand for the plain kernel.
    params = list(models[1].parameters())
    plain_groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
                    {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    plain = torch.optim.AdamW(plain_groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-7, foreach=False)
    assert fused.defaults["fused"]
    tokens = padded_tokens()
    for _ in range(5):
        norms = []
        for model, optimizer in zip(models, (fused, plain)):
            optimizer.zero_grad()
            (model.eval()(tokens, LENGTHS) ** 2).mean().backward()
            if optimizer is fused:
                norms.append(clipped_step(fused, model, max_norm))
            else:
                norms.append(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf))
                plain.step()
        torch.testing.assert_close(norms[0], norms[1], atol=0, rtol=1e-6)
        assert max_norm != 1e-9 or norms[0] > 1e6 * max_norm  # the bound does clip
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_evaluation_results_do_not_depend_on_the_batch_size(data_dir):
    task = load_task(DataConfig(dataset="question", data_dir=data_dir), ["test"])
    examples = task.eval["test"][:96]
    torch.manual_seed(0)
    model = create_lm(ModelConfig(vec_dim=32, n_heads=4, encoder_n_layers=2), len(task.vocab))
    interface = create_model_interface(model)
    small, large = (evaluate(interface, make_eval_batches(examples, task.vocab, size), "cpu")
                    for size in (32, 256))
    for field in ("loss", "first_half", "second_half"):
        assert getattr(small, field) == pytest.approx(getattr(large, field), abs=1e-5)
    assert (small.n_targets, small.n_correct, small.per_type, small.rule_counts) == \
        (large.n_targets, large.n_correct, large.per_type, large.rule_counts)
