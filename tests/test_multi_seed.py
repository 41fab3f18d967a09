"""--seeds: S models trained at once, each the single-seed run of its seed."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from checkpoint import load_model
from helpers import TINY_QF_RUN, assert_one_line, eval_events, events, train
from helpers import checkpoint_at as checkpoint
from models.weight_statistics import NAMES, weight_statistics

COMMON = [*TINY_QF_RUN, "--max_train_steps", "6", "--eval_every", "3", "--save_every", "3",
          "--dropout", "0"]  # no dropout: then a seed computes exactly what its single run does


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("seeds"))
    args = [*COMMON, "--save_dir", out]
    assert train(data_dir, *args, "--seeds", "5,6,7", "--save_prefix", "multi") == 0
    for seed in (5, 7):
        assert train(data_dir, *args, "--seed", str(seed), "--save_prefix", f"single{seed}") == 0
    return out


def test_each_seed_has_its_own_run(runs):
    assert sorted(os.listdir(runs)) == ["multi_seed5", "multi_seed6", "multi_seed7", "single5", "single7"]
    for seed in (5, 6, 7):
        run_dir = os.path.join(runs, f"multi_seed{seed}")
        assert json.load(open(os.path.join(run_dir, "args.json")))["seed"] == seed
        assert {f"checkpoint_{s}.pth" for s in (0, 3, 6)} <= set(os.listdir(run_dir))
        assert [e["iteration"] for e in events(run_dir) if "loss" in e] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("seed", [5, 7])
def test_each_seed_starts_like_its_single_run_and_sees_its_batches(runs, seed):
    multi, single = os.path.join(runs, f"multi_seed{seed}"), os.path.join(runs, f"single{seed}")
    start_multi, start_single = checkpoint(multi, 0), checkpoint(single, 0)
    for name, tensor in start_single["model_state_dict"].items():
        assert torch.equal(start_multi["model_state_dict"][name], tensor), name
    for step in (3, 6):
        order_multi, order_single = checkpoint(multi, step)["sampler_state"], checkpoint(single, step)["sampler_state"]
        assert torch.equal(order_multi["perm"], order_single["perm"]) and order_multi["pos"] == order_single["pos"]
    assert_same_events(multi, single)
    end_multi, end_single = checkpoint(multi, 6)["model_state_dict"], checkpoint(single, 6)["model_state_dict"]
    for name, tensor in end_single.items():
        torch.testing.assert_close(end_multi[name], tensor, rtol=1e-5, atol=1e-5)


def resume(data_dir: str, save_dir, *flags: str) -> int:
    """Resume (or start) the run of `flags` in save_dir: the exit code."""
    return train(data_dir, *COMMON, "--save_dir", str(save_dir), *flags, "--resume")


def unfinished_copy(runs: str, name: str, save_dir) -> str:
    """A copy of a finished run directory as it was at step 3 (its step-6 checkpoint and later events gone)."""
    copy = os.path.join(save_dir, name)
    shutil.copytree(os.path.join(runs, name), copy)
    os.remove(os.path.join(copy, "checkpoint_6.pth"))
    return copy


def test_each_seed_logs_the_weight_statistics_of_its_own_model(runs):
    logged = {seed: eval_events(os.path.join(runs, f"multi_seed{seed}")) for seed in (5, 6, 7)}
    for seed, by_step in logged.items():
        assert sorted(by_step) == [0, 3, 6]
        for step, event in by_step.items():
            model = load_model(os.path.join(runs, f"multi_seed{seed}", f"checkpoint_{step}.pth")).model
            assert {n: event[n] for n in NAMES} == pytest.approx(weight_statistics(model), rel=1e-6, abs=1e-12)
    assert logged[5][6]["weights/l1"] != logged[6][6]["weights/l1"]


def test_each_seed_records_exactly_its_single_run(runs):
    multi = json.load(open(os.path.join(runs, "multi_seed5", "args.json")))
    single = json.load(open(os.path.join(runs, "single5", "args.json")))
    assert multi == {**single, "save_prefix": "multi_seed5"}
    assert checkpoint(os.path.join(runs, "multi_seed5"), 3)["args"] == multi


def test_a_seed_directory_resumes_to_the_end_as_a_single_run(runs, data_dir, tmp_path):
    """Multi-seed checkpoints hold each seed's own optimizer state: a single run continues one."""
    state = checkpoint(os.path.join(runs, "multi_seed5"), 3)
    assert len(state["optimizer_state_dict"]["state"]) == len(state["model_state_dict"]) - 2  # no buffers
    single = checkpoint(os.path.join(runs, "single5"), 3)["optimizer_state_dict"]["state"]
    for index, moments in single.items():
        torch.testing.assert_close(state["optimizer_state_dict"]["state"][index]["exp_avg"], moments["exp_avg"],
                                   rtol=1e-4, atol=1e-7)
    resumed = unfinished_copy(runs, "multi_seed5", tmp_path)
    assert resume(data_dir, tmp_path, "--seed", "5", "--save_prefix", "multi_seed5") == 0
    assert_same_run(resumed, os.path.join(runs, "multi_seed5"))


def test_a_multi_seed_run_resumes_every_seed(runs, data_dir, tmp_path):
    copies = [unfinished_copy(runs, f"multi_seed{seed}", tmp_path) for seed in (5, 6, 7)]
    assert resume(data_dir, tmp_path, "--seeds", "5,6,7", "--save_prefix", "multi") == 0
    for seed, copy in zip((5, 6, 7), copies):
        assert_same_run(copy, os.path.join(runs, f"multi_seed{seed}"))


def test_a_seed_recorded_with_the_whole_seed_list_still_resumes(runs, data_dir, tmp_path):
    """Checkpoints of earlier versions hold the --seeds run's own arguments in each seed."""
    copy = unfinished_copy(runs, "multi_seed6", tmp_path)
    path = os.path.join(copy, "checkpoint_3.pth")
    state = torch.load(path, weights_only=True)
    state["args"] = {**state["args"], "seeds": "5,6,7", "save_prefix": "multi"}
    torch.save(state, path)
    assert resume(data_dir, tmp_path, "--seed", "6", "--save_prefix", "multi_seed6") == 0
    assert_same_run(copy, os.path.join(runs, "multi_seed6"))


def assert_same_events(run_dir: str, expected_dir: str) -> None:
    """The two runs logged the same events, with the same values up to float noise."""
    for a, b in zip(events(run_dir), events(expected_dir), strict=True):
        assert a.keys() == b.keys()
        for key, value in b.items():
            assert a[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def assert_same_run(resumed: str, uninterrupted: str) -> None:
    """The resumed run logged the same events and ended with the same weights (within float noise:
    a single-seed step and a stacked one round differently)."""
    assert_same_events(resumed, uninterrupted)
    end, expected = checkpoint(resumed, 6), checkpoint(uninterrupted, 6)
    assert end["step"] == 6
    assert {**end["args"], "resume": False, "save_dir": None} == {**expected["args"], "save_dir": None}
    for name, tensor in expected["model_state_dict"].items():
        torch.testing.assert_close(end["model_state_dict"][name], tensor, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "1,1"], "twice"),
    (["--seeds", "1,x"], "--seeds"),
    (["--seeds", "1,2", "--not_lm"], "--seeds"),
])
def test_bad_seed_lists_are_refused(data_dir, tmp_path, capsys, flags, message):
    code = train(data_dir, *COMMON, *flags, "--save_dir", str(tmp_path / "out"))
    assert code == 2
    assert_one_line(capsys.readouterr().err, message)
    assert not (tmp_path / "out").exists()
