"""Runs that are killed, preempted, fed bad checkpoints or diverge (subprocesses, tiny models)."""
from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import train_transformers
import training_utils

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--encoder_n_layers", "1", "--vec_dim", "32", "--n_heads", "2", "--tied-embedding",
        "--lr", "1e-3", "--num_warmup_steps", "5", "--seed", "7", "--dataset", "question",
        "--subset_train_frac", "0.02", "--callback", "--eval_keys", "val"]
STEPS = 60


def command(data_dir: str, save_dir: str, *extra: str) -> list[str]:
    return [sys.executable, "train_transformers.py", "--data_dir", data_dir, *TINY,
            "--max_train_steps", str(STEPS), "--eval_every", "10", "--save_every", "4",
            "--save_dir", save_dir, "--save_prefix", "run", "--resume", *extra]


def start(data_dir: str, save_dir: str) -> subprocess.Popen:
    return subprocess.Popen(command(data_dir, save_dir), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def final_state(run_dir: str) -> dict:
    return torch.load(os.path.join(run_dir, f"checkpoint_{STEPS}.pth"), weights_only=True)


def assert_same_run(run_dir: str, reference_dir: str) -> None:
    ours, ref = final_state(run_dir), final_state(reference_dir)
    for key in ("model_state_dict", "optimizer_state_dict"):
        flat_ours, flat_ref = _tensors(ours[key]), _tensors(ref[key])
        assert flat_ours.keys() == flat_ref.keys()
        for name, tensor in flat_ref.items():
            assert torch.equal(flat_ours[name], tensor), f"{key} {name}"
    with open(os.path.join(run_dir, "metrics.jsonl")) as a, open(os.path.join(reference_dir, "metrics.jsonl")) as b:
        assert a.read() == b.read()


def _tensors(tree, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {prefix: torch.tensor(tree)} if isinstance(tree, (int, float)) else {}
    out = {}
    for key, value in items:
        out.update(_tensors(value, f"{prefix}/{key}"))
    return out


def wait_for_progress(run_dir: str, proc: subprocess.Popen, after: float) -> None:
    """Wait until the run has logged something (so it is training), then `after` more seconds."""
    metrics = os.path.join(run_dir, "metrics.jsonl")
    deadline = time.monotonic() + 120
    while not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
        assert proc.poll() is None or proc.returncode == 0, proc.stderr.read()
        if proc.poll() is not None or time.monotonic() > deadline:
            return
        time.sleep(0.02)
    time.sleep(after)


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory) -> str:
    """An uninterrupted run of the same command."""
    save_dir = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(command(data_dir, str(save_dir)), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return str(save_dir / "run")


def torn_saves(run_dir: str) -> set[str]:
    """Temporaries of checkpoint saves in progress (or torn by a kill)."""
    names = os.listdir(run_dir) if os.path.isdir(run_dir) else []
    return {n for n in names if n.startswith(".checkpoint_") and ".tmp" in n}


def wait_for_a_save(run_dir: str, proc: subprocess.Popen) -> None:
    """Wait until the run is in the middle of writing a checkpoint it did not start with."""
    old = torn_saves(run_dir)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not torn_saves(run_dir) - old:
        time.sleep(0.0002)  # a tiny model's save takes milliseconds


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_run(data_dir, reference_run, tmp_path):
    rng = random.Random(0)
    run_dir = str(tmp_path / "run")
    kills = torn = 0
    for kill in range(6):
        proc = start(data_dir, str(tmp_path))
        before = torn_saves(run_dir)
        if kill % 2:
            wait_for_a_save(run_dir, proc)
        else:
            wait_for_progress(run_dir, proc, after=rng.uniform(0.0, 0.6))
        if proc.poll() is not None:
            break  # finished before the kill: nothing left to interrupt
        proc.kill()
        proc.wait()
        kills += 1
        torn += bool(torn_saves(run_dir) - before)  # this kill interrupted a checkpoint save
    assert kills >= 5 and torn >= 2, (kills, torn)
    proc = subprocess.run(command(data_dir, str(tmp_path)), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not [n for n in os.listdir(run_dir) if ".tmp" in n]  # leftovers of torn writes are gone
    assert_same_run(run_dir, reference_run)


@pytest.mark.slow
def test_sigterm_checkpoints_exits_75_and_resume_finishes_the_same(data_dir, reference_run, tmp_path):
    run_dir = str(tmp_path / "run")
    proc = start(data_dir, str(tmp_path))
    wait_for_progress(run_dir, proc, after=0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    stopped = int(err.split(" at step ")[1].split(";")[0])
    assert 0 < stopped < STEPS
    assert os.path.exists(os.path.join(run_dir, f"checkpoint_{stopped}.pth"))
    proc = subprocess.run(command(data_dir, str(tmp_path)), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming {run_dir} from step {stopped}" in proc.stdout
    assert_same_run(run_dir, reference_run)


class _Payload:
    """Unpickling this runs `touch <marker>`: a checkpoint must never be able to do that."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["pickled code", "truncated"])
def test_unsafe_or_truncated_checkpoints_are_refused(data_dir, tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "bad.pth"
    if kind == "pickled code":
        torch.save({"model_state_dict": {}, "evil": _Payload(str(marker))}, path, pickle_module=pickle)
    else:
        good = tmp_path / "good.pth"
        torch.save({"model_state_dict": {"x": torch.zeros(1000)}}, good)
        path.write_bytes(good.read_bytes()[:2000])
    proc = subprocess.run([sys.executable, "train_transformers.py", "--data_dir", data_dir, *TINY,
                           "--model_load_path", str(path), "--save_dir", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and str(path) in proc.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_nonfinite_loss_stops_at_that_step_keeping_the_last_checkpoint(data_dir, tmp_path, monkeypatch, capsys):
    real = training_utils.make_objective

    def poisoned(*args, **kwargs):
        interface = real(*args, **kwargs)
        calls = {"train": 0}

        def call(batch):
            out = interface(batch)
            if interface.model.training:
                calls["train"] += 1
                if calls["train"] == 7:
                    out.loss = out.loss * float("nan")
            return out

        call.model = interface.model
        return call

    monkeypatch.setattr(training_utils, "make_objective", poisoned)
    code = train_transformers.main(["--data_dir", data_dir, *TINY, "--max_train_steps", "20",
                                    "--eval_every", "10", "--save_every", "4",
                                    "--save_dir", str(tmp_path), "--save_prefix", "nan"])
    err = capsys.readouterr().err
    run_dir = tmp_path / "nan"
    assert code == 1 and err.count("\n") == 1
    assert "non-finite loss" in err and "at step 7" in err and str(run_dir / "checkpoint_4.pth") in err
    assert sorted(n for n in os.listdir(run_dir) if n.endswith(".pth")) == ["checkpoint_0.pth", "checkpoint_4.pth"]
    state = torch.load(run_dir / "checkpoint_4.pth", weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model_state_dict"].values())
    events = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    assert max(e["iteration"] for e in events) == 6


def test_resume_refuses_other_flags(data_dir, tmp_path, capsys):
    args = ["--data_dir", data_dir, *TINY, "--max_train_steps", "4", "--save_dir", str(tmp_path),
            "--save_prefix", "r", "--resume"]
    assert train_transformers.main(args) == 0
    capsys.readouterr()
    assert train_transformers.main([*args, "--lr", "5e-4"]) == 2
    assert "--lr" in capsys.readouterr().err


def test_disk_full_during_a_save_keeps_the_last_checkpoint(data_dir, tmp_path, monkeypatch, capsys):
    import checkpoint

    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if obj["step"] == 8:
            f.write(b"partial")
            raise OSError(28, "No space left on device", f.name)
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    code = train_transformers.main(["--data_dir", data_dir, *TINY, "--max_train_steps", "12",
                                    "--eval_every", "10", "--save_every", "4",
                                    "--save_dir", str(tmp_path), "--save_prefix", "full"])
    err = capsys.readouterr().err
    run_dir = tmp_path / "full"
    assert code == 1 and err.count("\n") == 1 and "No space left on device" in err
    assert str(run_dir / "checkpoint_4.pth") in err
    assert sorted(os.listdir(run_dir)) == ["args.json", "checkpoint_0.pth", "checkpoint_4.pth", "metrics.jsonl"]
    assert torch.load(run_dir / "checkpoint_4.pth", weights_only=True)["step"] == 4


def test_a_signal_during_an_evaluation_still_gets_its_checkpoint(data_dir, tmp_path, monkeypatch, capsys):
    real = training_utils.Run.evaluate

    def evaluate_then_signal(self):
        metrics = real(self)
        if self.step == 10:
            os.kill(os.getpid(), signal.SIGTERM)
        return metrics

    monkeypatch.setattr(training_utils.Run, "evaluate", evaluate_then_signal)
    code = train_transformers.main(["--data_dir", data_dir, *TINY, "--max_train_steps", "20",
                                    "--eval_every", "10", "--save_every", "4",
                                    "--save_dir", str(tmp_path), "--save_prefix", "sig"])
    assert code == 75 and "stopped by SIGTERM at step 10" in capsys.readouterr().err
    state = torch.load(tmp_path / "sig" / "checkpoint_10.pth", weights_only=True)
    events = [json.loads(line) for line in open(tmp_path / "sig" / "metrics.jsonl")]
    assert state["step"] == 10 and [e["iteration"] for e in events if "loss" in e] == list(range(1, 11))
