"""submit_gpu.sh and submit_analysis.sh on a real single-node SLURM cluster (the `slurm_cluster` fixture).

Tiny CPU runs (`--gres=none`); each job uses this interpreter and the session's generated data dir.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import REPO, checkpoint_at, events, model_flags, read_csv, read_jsonl, train
from slurm_cluster import FINAL_STATES

pytestmark = pytest.mark.slurm

SCRIPT = str(REPO / "submit_gpu.sh")
ANALYSIS_SCRIPT = str(REPO / "submit_analysis.sh")
# Small enough for two jobs at once on two cores; sbatch flags override the script's GPU-sized request.
SBATCH_FLAGS = ["--gres=none", "--cpus-per-task=1", "--mem=1G", "--time=10"]
STEPS = 600


def tiny_job_env(data_dir: str, save_dir: Path, **overrides: str) -> dict[str, str]:
    env = {"HIER_GEN_DIR": str(REPO), "PYTHON": sys.executable, "DATA_DIR": data_dir, "SAVE_DIR": str(save_dir),
           "DATASET": "question", "LR": "1e-3", "STEPS": str(STEPS), "WARMUP": "50", "LAYERS": "2",
           "EVAL_EVERY": str(STEPS), "SAVE_EVERY": str(STEPS), "SEED0": "7",
           "EXTRA_FLAGS": "--vec_dim 64 --n_heads 2 --eval_keys val",
           "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return {**env, **overrides}


def submit(cluster, tmp_path: Path, env: dict[str, str], *flags: str) -> str:
    """sbatch submit_gpu.sh from tmp_path (logs go to tmp_path/slurm_out); returns the job id."""
    (tmp_path / "slurm_out").mkdir(exist_ok=True)
    return cluster.sbatch(SCRIPT, *SBATCH_FLAGS, *flags, env=env, cwd=str(tmp_path))


def run_dir(save_dir: Path, job_id: str) -> Path:
    (path,) = glob.glob(str(save_dir / f"*_{job_id}"))
    return Path(path)


def final_weights(directory: Path) -> dict[str, torch.Tensor]:
    return checkpoint_at(directory, STEPS)["model_state_dict"]


def test_array_tasks_train_distinct_seeds(slurm_cluster, data_dir, tmp_path):
    save_dir = tmp_path / "runs"
    job = submit(slurm_cluster, tmp_path, tiny_job_env(data_dir, save_dir), "--array=0-1")
    records = slurm_cluster.wait(job, timeout=180)
    assert [r["JobState"] for r in records] == ["COMPLETED"] * 2, [slurm_cluster.log(r) for r in records]
    seeds = set()
    for r in records:
        directory = run_dir(save_dir, r["JobId"])
        seeds.add(json.loads((directory / "args.json").read_text())["seed"])
        assert any(e.get("iteration") == STEPS and "curr-val-ppl" in e
                   for e in events(directory))
        assert (directory / "checkpoint_0.pth").exists() and (directory / f"checkpoint_{STEPS}.pth").exists()
        assert r["StdOut"] == str(tmp_path / "slurm_out" / f"hier_gen_{job}_{r['ArrayTaskId']}.out")
    assert seeds == {7, 8}


def test_signalled_job_requeues_and_resumes_to_the_same_weights(slurm_cluster, data_dir, tmp_path):
    save_dir = tmp_path / "runs"
    # metrics.jsonl is written out at each checkpoint: SAVE_EVERY sets when progress shows.
    env = tiny_job_env(data_dir, save_dir, SAVE_EVERY=str(STEPS // 3))
    reference = submit(slurm_cluster, tmp_path, env)
    job = submit(slurm_cluster, tmp_path, env)
    wait_for_training_progress(save_dir, job, timeout=120)
    slurm_cluster.command("scancel", "--signal=USR1", "--batch", job)
    wait_until_requeued(slurm_cluster, job, timeout=60)
    # A requeued job waits about two minutes before it may start again; let it start now. Not in
    # the second of the requeue though: slurmd revokes the old run's credential with a timestamp
    # in whole seconds, and a new credential of that same second is refused ("credential revoked").
    time.sleep(2)
    slurm_cluster.command("scontrol", "update", f"JobId={job}", "StartTime=now")
    (record,) = slurm_cluster.wait(job, timeout=180)
    (ref_record,) = slurm_cluster.wait(reference, timeout=60)
    log = slurm_cluster.log(record)
    assert record["JobState"] == ref_record["JobState"] == "COMPLETED", log
    assert record["Restarts"] == "1"
    stopped = re.search(r"stopped by SIGUSR1 at step (\d+)", log)
    assert stopped and 0 < int(stopped.group(1)) < STEPS, log
    assert f"from step {stopped.group(1)}" in log, log  # resumed from the signal's checkpoint
    resumed, uninterrupted = final_weights(run_dir(save_dir, job)), final_weights(run_dir(save_dir, reference))
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed[name], tensor), name


def wait_for_training_progress(save_dir: Path, job: str, timeout: float) -> None:
    """Until the job's metrics.jsonl holds a training step (so python handles signals by now)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        paths = glob.glob(str(save_dir / f"*_{job}" / "metrics.jsonl"))
        if paths and any("loss" in e for e in read_jsonl(paths[0])):
            return
        time.sleep(0.2)
    raise TimeoutError(f"job {job} logged no training step in {timeout:.0f} s")


def wait_until_requeued(cluster, job: str, timeout: float) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = cluster.jobs(job)
        if records[0]["JobState"] == "PENDING" and records[0]["Restarts"] != "0":
            return records
        if records[0]["JobState"] in FINAL_STATES:
            raise AssertionError(f"job {job} ended {records[0]['JobState']} instead of requeueing:\n"
                                 + cluster.log(records[0]))
        time.sleep(0.2)
    raise TimeoutError(f"job {job} was not requeued within {timeout:.0f} s")


def test_bad_flag_fails_the_job_with_a_one_line_reason(slurm_cluster, data_dir, tmp_path):
    env = tiny_job_env(data_dir, tmp_path / "runs", EXTRA_FLAGS="--batch_size 0")
    job = submit(slurm_cluster, tmp_path, env)
    (record,) = slurm_cluster.wait(job, timeout=60)
    assert record["JobState"] == "FAILED" and record["ExitCode"] == "2:0"
    assert record["Restarts"] == "0"
    assert slurm_cluster.log(record).splitlines() == ["error: --batch_size must be at least 1 (got 0)"]


def test_the_script_asks_each_task_for_a_gpu(slurm_cluster, data_dir, tmp_path):
    """The paper's setting: this cluster has no GPUs, so sbatch refuses the request outright."""
    env = tiny_job_env(data_dir, tmp_path / "runs")
    with pytest.raises(RuntimeError, match=r"generic resource \(gres\)"):
        slurm_cluster.sbatch(SCRIPT, "--cpus-per-task=1", env=env, cwd=str(tmp_path))


def test_scancel_stops_a_running_job_for_good(slurm_cluster, data_dir, tmp_path):
    save_dir = tmp_path / "runs"
    job = submit(slurm_cluster, tmp_path, tiny_job_env(data_dir, save_dir, SAVE_EVERY=str(STEPS // 3)))
    wait_for_training_progress(save_dir, job, timeout=120)
    slurm_cluster.command("scancel", job)
    (record,) = slurm_cluster.wait(job, timeout=60)
    assert record["JobState"] == "CANCELLED" and record["Restarts"] == "0"


@pytest.fixture(scope="module")
def two_runs(data_dir, tmp_path_factory) -> list[Path]:
    """Two seeds of a tiny QF LM, each saved at steps 0 and 2."""
    out = tmp_path_factory.mktemp("analysis_runs")
    assert train(data_dir, *model_flags(1, 16, 2), "--dataset", "question", "--callback", "--eval_keys", "val",
                 "--max_train_steps", "2", "--eval_every", "2", "--save_every", "2", "--seeds", "1,2",
                 "--save_dir", str(out), "--save_prefix", "r") == 0
    return [out / "r_seed1", out / "r_seed2"]


def test_analysis_array_analyses_one_listed_run_per_task(slurm_cluster, two_runs, tmp_path):
    runs = tmp_path / "runs.txt"
    # A blank line does not count; a relative path is relative to the folder sbatch ran in.
    runs.write_text(f"{two_runs[0]}\n\n{os.path.relpath(two_runs[1], tmp_path)}\n")
    env = {"HIER_GEN_DIR": str(REPO), "PYTHON": sys.executable, "ANALYSIS": "checkpoints",
           "ANALYSIS_FLAGS": "--splits val", "RUNS": str(runs), "OMP_NUM_THREADS": "1"}
    (tmp_path / "slurm_out").mkdir()
    job = slurm_cluster.sbatch(ANALYSIS_SCRIPT, *SBATCH_FLAGS, "--array=0-2", env=env, cwd=str(tmp_path))
    records = sorted(slurm_cluster.wait(job, timeout=180), key=lambda r: int(r["ArrayTaskId"]))
    assert [r["JobState"] for r in records] == ["COMPLETED", "COMPLETED", "FAILED"], \
        [slurm_cluster.log(r) for r in records]
    for run in two_runs:
        table = read_csv(run / "analysis" / "checkpoints.csv")
        assert table["step"].tolist() == [0, 2] and {"val_aux", "val_full_seq"} <= set(table.columns)
    # The task past the end of the list fails at once with one line.
    assert records[2]["ExitCode"] == "2:0"
    assert slurm_cluster.log(records[2]).splitlines() == [
        f"error: {runs} lists 2 run directories: none for array task 2"]
