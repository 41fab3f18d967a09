"""--bf16 and --compile, checked on the CPU; the host-sync check needs a CUDA device."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from checkpoint import research_state_dict
from evaluation import evaluate
from helpers import model_flags, run_config, train
from trainer import Trainer
from training_utils import Run

TINY = [*model_flags(2, 32, 4), "--dataset", "question", "--dropout", "0", "--seed", "3"]


def tiny_run(data_dir: str, *extra: str, device: str = "cpu") -> Run:
    """The run of a tiny single-seed Trainer."""
    return Trainer(run_config(data_dir, *TINY, "--device", device, *extra)).runs[0]


def test_bf16_runs_the_forward_matmuls_in_bf16_and_keeps_fp32_state(data_dir):
    plain, mixed = tiny_run(data_dir), tiny_run(data_dir, "--bf16")
    seen = []
    mixed.model.trafo["encoder"].layers[0].linear1.register_forward_hook(
        lambda module, inputs, output: seen.append(output.dtype))
    loss = {}
    for name, run in (("plain", plain), ("mixed", mixed)):
        loss[name] = run.train_step().values["loss"]
    assert seen == [torch.bfloat16]
    assert loss["mixed"].dtype == torch.float32
    assert loss["mixed"].item() == pytest.approx(loss["plain"].item(), rel=0.02)
    assert not torch.equal(loss["mixed"], loss["plain"])  # bf16 rounding does show
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())
    assert all(v.dtype == torch.float32 for state in mixed.optimizer.state.values()
               for k, v in state.items() if k != "step")


def test_bf16_covers_the_stacked_forward_of_many_seeds(data_dir):
    cfg = run_config(data_dir, *TINY, "--device", "cpu", "--seeds", "1,2")
    plain, mixed = (Trainer(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, bf16=b)))
                    for b in (False, True))
    seen = []
    # A projection without bias: under vmap, a Linear's bf16 matmul comes out fp32 after its
    # fp32 bias is added, so the FF layers would not show it.
    mixed.stack.base.trafo["encoder"].layers[0].self_attn.data_to_q.register_forward_hook(
        lambda module, inputs, output: seen.append(output.dtype))
    losses = [torch.stack([r.values["loss"] for r in trainer.train_step()]) for trainer in (plain, mixed)]
    assert seen == [torch.bfloat16]
    torch.testing.assert_close(losses[1], losses[0], rtol=0.02, atol=0)


def test_a_compiled_model_computes_what_the_eager_one_does(data_dir):
    eager, compiled = tiny_run(data_dir), tiny_run(data_dir, "--compile")
    traced = []  # a hook runs inside the compiled graph only while dynamo traces it
    compiled.model.trafo["encoder"].layers[0].register_forward_hook(
        lambda module, inputs, output: traced.append(torch.compiler.is_compiling()))
    losses, val = {}, {}
    for name, run in (("eager", eager), ("compiled", compiled)):
        losses[name] = [run.train_step().values["loss"].item() for _ in range(2)]
        val[name] = evaluate(run.objective, run.eval_batches["val"], "cpu")
    assert any(traced)
    assert losses["compiled"] == pytest.approx(losses["eager"], abs=1e-5)
    assert val["compiled"].loss == pytest.approx(val["eager"].loss, abs=1e-5)
    assert val["compiled"].n_correct == val["eager"].n_correct
    saved = [research_state_dict(t.model) for t in (eager, compiled)]
    assert list(saved[0]) == list(saved[1])  # the research key names, no torch.compile prefix
    for key in saved[0]:
        torch.testing.assert_close(saved[1][key], saved[0][key], atol=1e-5, rtol=1e-5)


def test_compile_with_many_seeds_is_refused(data_dir, capsys):
    assert train(data_dir, *TINY, "--compile", "--seeds", "1,2") == 2
    assert "--compile is for single-seed runs" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("extra", [[], ["--bf16"]])
def test_cuda_training_steps_never_wait_for_the_device(data_dir, extra):
    run = tiny_run(data_dir, *extra, device="cuda")
    run.train_step()  # the first step allocates optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            run.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
