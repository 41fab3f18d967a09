"""Clipping and AdamW: one clipping function for single runs and stacked seeds, as torch clips."""
from __future__ import annotations

import math

import pytest
import torch

from helpers import tiny_model
from training_utils import clip_gradients, make_optimizer

TOKENS = torch.tensor([[12, 3, 5, 7, 1, 2], [12, 4, 4, 9, 0, 0]])
LENGTHS = torch.tensor([6, 4])


def tiny_lm(seed: int = 0) -> torch.nn.Module:
    return tiny_model(seed, 20, vec_dim=16, n_heads=2)


def backward(model: torch.nn.Module) -> list[torch.Tensor]:
    (model(TOKENS, LENGTHS) ** 2).mean().backward()
    return [p.grad for p in model.parameters()]


# No clipping; a bound far below the norm, where the clipped gradients are smaller than eps and a
# wrong clip factor would show in the update (Adam is otherwise blind to scale); a bound not reached.
@pytest.mark.parametrize("max_norm", [0.0, 1e-9, 1e3])
def test_clipping_and_fused_adamw_equal_clip_grad_norm_and_plain_adamw(max_norm):
    models = [tiny_lm(), tiny_lm()]
    fused = make_optimizer(models[0], lr=1e-3, weight_decay=0.1)
    # The same groups (decayed matrices, undecayed vectors), built by hand for the plain kernel.
    params = list(models[1].parameters())
    plain_groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
                    {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    plain = torch.optim.AdamW(plain_groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-7, foreach=False)
    assert fused.defaults["fused"]
    for _ in range(5):
        fused.zero_grad(), plain.zero_grad()
        ours = clip_gradients(backward(models[0]), max_norm)
        backward(models[1])
        theirs = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf)
        fused.step(), plain.step()
        torch.testing.assert_close(ours, theirs, atol=0, rtol=1e-6)
        assert max_norm != 1e-9 or ours > 1e6 * max_norm  # the bound does clip
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("max_norm", [0.0, 0.05])
def test_stacked_gradients_are_clipped_seed_by_seed(max_norm):
    grads = [backward(tiny_lm(seed)) for seed in range(3)]
    stacked = [torch.stack(per_seed) for per_seed in zip(*grads)]
    norms = clip_gradients(stacked, max_norm, stacked=True)
    for s, own in enumerate(grads):
        own_norm = clip_gradients(own, max_norm)
        torch.testing.assert_close(norms[s], own_norm)
        for together, alone in zip(stacked, own):
            torch.testing.assert_close(together[s], alone)
    assert max_norm == 0 or (norms > max_norm).all()  # the bound does clip every seed
