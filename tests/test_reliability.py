"""Runs that are killed, preempted, fed bad checkpoints or diverge (subprocesses, tiny models)."""
from __future__ import annotations

import os
import pickle
import random
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

import training_utils
from helpers import REPO, TINY_QF_RUN, Payload, assert_one_line, checkpoint_at, events, run_python, train
from util import atomic_write_text

TINY = [*TINY_QF_RUN, "--seed", "7", "--subset_train_frac", "0.02"]
STEPS = 60


def command(data_dir: str, save_dir: str) -> list[str]:
    """The command line, after python, of the run these tests interrupt: it starts the run or resumes it."""
    return ["train_transformers.py", "--data_dir", data_dir, *TINY,
            "--max_train_steps", str(STEPS), "--eval_every", "10", "--save_every", "4",
            "--save_dir", save_dir, "--save_prefix", "run", "--resume"]


def start(data_dir: str, save_dir: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *command(data_dir, save_dir)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def short_run(data_dir: str, save_dir, prefix: str, steps: int) -> int:
    """An in-process run of `steps` steps, saving every 4, into save_dir/prefix: its exit code."""
    return train(data_dir, *TINY, "--max_train_steps", str(steps), "--eval_every", "10", "--save_every", "4",
                 "--save_dir", str(save_dir), "--save_prefix", prefix)


def assert_same_run(run_dir: str, reference_dir: str) -> None:
    ours, ref = checkpoint_at(run_dir, STEPS), checkpoint_at(reference_dir, STEPS)
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
    proc = run_python(*command(data_dir, str(save_dir)))
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
    proc = run_python(*command(data_dir, str(tmp_path)))
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
    proc = run_python(*command(data_dir, str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert f"resuming {run_dir} from step {stopped}" in proc.stdout
    assert_same_run(run_dir, reference_run)


@pytest.mark.parametrize("kind", ["pickled code", "truncated"])
def test_unsafe_or_truncated_checkpoints_are_refused(data_dir, tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "bad.pth"
    if kind == "pickled code":
        torch.save({"model_state_dict": {}, "evil": Payload(marker)}, path, pickle_module=pickle)
    else:
        good = tmp_path / "good.pth"
        torch.save({"model_state_dict": {"x": torch.zeros(1000)}}, good)
        path.write_bytes(good.read_bytes()[:2000])
    proc = run_python("train_transformers.py", "--data_dir", data_dir, *TINY,
                      "--model_load_path", str(path), "--save_dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert_one_line(proc.stderr, str(path))
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
    code = short_run(data_dir, tmp_path, "nan", 20)
    err = capsys.readouterr().err
    run_dir = tmp_path / "nan"
    assert code == 1
    assert_one_line(err, "non-finite loss", "at step 7", str(run_dir / "checkpoint_4.pth"))
    assert sorted(n for n in os.listdir(run_dir) if n.endswith(".pth")) == ["checkpoint_0.pth", "checkpoint_4.pth"]
    state = checkpoint_at(run_dir, 4)
    assert all(torch.isfinite(t).all() for t in state["model_state_dict"].values())
    assert max(e["iteration"] for e in events(run_dir)) == 6


def test_resume_refuses_other_flags(data_dir, tmp_path, capsys):
    args = [*TINY, "--max_train_steps", "4", "--save_dir", str(tmp_path), "--save_prefix", "r", "--resume"]
    assert train(data_dir, *args) == 0
    capsys.readouterr()
    assert train(data_dir, *args, "--lr", "5e-4") == 2
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
    code = short_run(data_dir, tmp_path, "full", 12)
    err = capsys.readouterr().err
    run_dir = tmp_path / "full"
    assert code == 1
    assert_one_line(err, "No space left on device", str(run_dir / "checkpoint_4.pth"))
    assert sorted(os.listdir(run_dir)) == ["args.json", "checkpoint_0.pth", "checkpoint_4.pth", "metrics.jsonl"]
    assert checkpoint_at(run_dir, 4)["step"] == 4


def test_a_signal_during_an_evaluation_still_gets_its_checkpoint(data_dir, tmp_path, monkeypatch, capsys):
    real = training_utils.Run.evaluate

    def evaluate_then_signal(self):
        metrics = real(self)
        if self.step == 10:
            os.kill(os.getpid(), signal.SIGTERM)
        return metrics

    monkeypatch.setattr(training_utils.Run, "evaluate", evaluate_then_signal)
    code = short_run(data_dir, tmp_path, "sig", 20)
    assert code == 75 and "stopped by SIGTERM at step 10" in capsys.readouterr().err
    state = checkpoint_at(tmp_path / "sig", 10)
    assert state["step"] == 10
    assert [e["iteration"] for e in events(tmp_path / "sig") if "loss" in e] == list(range(1, 11))


def test_atomic_writes_give_the_file_the_permissions_open_would(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(str(tmp_path / "table.csv"), "a,b\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "table.csv").st_mode) == 0o640
