"""Running a recipe: training what is not finished (here, or as SLURM arrays), then its analyses and report.

Locally, the unfinished runs are dealt into one share per core, in recipe order and of equal
training left; each share trains as one process per condition (`--seeds`: its seeds of that
condition that resume from the same step), one after the other, the shares in parallel. Equal
shares rather than a process per condition: three conditions on two cores would otherwise leave one
core idle for a third of the time. Every command is given `--resume`, so a rerun continues where a
killed one stopped (from its latest checkpoint).
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from analysis.__main__ import main as analysis
from analysis.hmm import MIN_RUNS
from analysis.report import weight_statistics_runs
from analysis.runs import find_runs
from config import seeded
from recipes.recipe import REPO, Recipe, progress, run_directories
from util import HierGenError

STEP_LINE = re.compile(r"step (\d+)[:/]")  # the trainer's evaluation and status lines
STOPPED = 75  # the trainer's exit code after a SIGTERM, once its checkpoint is written
JOBS_FILE = "slurm_jobs.json"


def paths(out: str) -> tuple[str, str, str]:
    """The recipe's run directories, logs and report folders under OUT."""
    return os.path.join(out, "runs"), os.path.join(out, "logs"), os.path.join(out, "report")


def unfinished(recipe: Recipe, save_dir: str) -> dict[str, list[int]]:
    """{condition: its unfinished seeds}, conditions with none left out."""
    seeds: dict[str, list[int]] = defaultdict(list)
    for (condition, seed), step in progress(recipe, save_dir).items():
        if step < recipe.max_train_steps:
            seeds[condition].append(seed)
    return dict(seeds)


def shares(recipe: Recipe, save_dir: str, jobs: int) -> list[list[tuple[str, list[int]]]]:
    """The unfinished runs in at most `jobs` shares of about equal steps left, each a list of
    (condition, seeds) processes: a condition's seeds resuming from one step train together."""
    left = [(c, seed, step, recipe.max_train_steps - max(step, 0)) for (c, seed), step in
            progress(recipe, save_dir).items() if step < recipe.max_train_steps]
    total = sum(steps for *_, steps in left)
    parts: list[list[tuple[str, int, int]]] = [[] for _ in range(jobs)]
    so_far = 0
    for condition, seed, step, steps in left:
        # A run joins the share in which the middle of its training falls.
        parts[min(jobs - 1, (so_far + steps // 2) * jobs // total)].append((condition, seed, step))
        so_far += steps
    dealt = []
    for part in parts:
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for condition, seed, step in part:
            groups[(condition, step)].append(seed)
        if groups:
            dealt.append([(condition, seeds) for (condition, _), seeds in groups.items()])
    return dealt


def train_locally(recipe: Recipe, out: str, data_dir: str, jobs: int) -> None:
    """Train every unfinished run in `jobs` shares at once, one bar for all."""
    save_dir, logs, _ = paths(out)
    os.makedirs(logs, exist_ok=True)
    todo = shares(recipe, save_dir, jobs)
    done = progress(recipe, save_dir)
    steps = {key: max(step, 0) for key, step in done.items()}  # advanced by the trainers' output
    # Not on a terminal (a log file), a line every minute rather than every second.
    bar = tqdm(total=len(steps) * recipe.max_train_steps, initial=sum(steps.values()), unit="step",
               desc=recipe.name, dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 60)
    failures: dict[int, str] = {}  # by share, so that the message lists them in recipe order
    processes: list[subprocess.Popen] = []
    stopping = threading.Event()

    def share(index: int, part: list[tuple[str, list[int]]]) -> None:
        for name, seeds in part:
            if stopping.is_set():
                return
            command = [sys.executable, os.path.join(REPO, "train_transformers.py"),
                       *recipe.command(name, seeds, os.path.abspath(save_dir), data_dir)]
            stem = os.path.join(logs, f"{name}_seeds{','.join(map(str, seeds))}")
            rc = train(command, stem, name, seeds, processes,
                       lambda step: steps.update({(name, s): step for s in seeds}))
            if rc != 0:
                failures[index] = (f"{name} (seeds {','.join(map(str, seeds))}; "
                                   + ("stopped: run again to continue)" if rc == STOPPED else f"exit code {rc}; see {stem}.log)"))
                return

    def stop(signum, frame):
        """Ctrl-C or a kill: let every trainer checkpoint and exit, then stop."""
        stopping.set()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = [pool.submit(share, i, part) for i, part in enumerate(todo)]
            while not all(f.done() for f in futures):
                time.sleep(1)
                bar.update(sum(steps.values()) - bar.n)
            for f in futures:
                f.result()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    bar.update(sum(steps.values()) - bar.n)
    bar.close()
    if failures:
        raise HierGenError(f"training did not finish: {'; '.join(failures[i] for i in sorted(failures))}")


def train(command: list[str], stem: str, condition: str, seeds: list[int], processes: list, reached) -> int:
    """Run one training process, its output appended to STEM.log, reporting each step it prints;
    STEM.pid says which runs it trains while it lives (for `status`). Its own session: a Ctrl-C
    reaches the runner alone, which stops the trainers in order."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core per share: the shares use the rest
    pid_file = stem + ".pid"
    with open(stem + ".log", "a", buffering=1) as f:  # line by line: the log follows the trainer
        f.write(f"$ {shlex.join(command)}\n")
        f.flush()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, bufsize=1, start_new_session=True)
        processes.append(process)
        with open(pid_file, "w") as p:
            json.dump({"pid": process.pid, "condition": condition, "seeds": seeds}, p)
        for line in process.stdout:
            f.write(line)
            if m := STEP_LINE.match(line):
                reached(int(m.group(1)))
        rc = process.wait()
    os.remove(pid_file)
    return rc


def analyse(recipe: Recipe, out: str) -> str:
    """hmm when at least MIN_RUNS runs logged weight statistics, then the report (which writes
    dynamics' tables and figures and each run's figure); returns the page's path. An hmm that
    cannot fit (too few evaluations for its states) leaves the page without a map, not without a page."""
    save_dir, _, report = paths(out)
    found = run_directories(save_dir)
    runs = [found[seeded(c, s)] for c in recipe.conditions for s in recipe.seeds if seeded(c, s) in found]
    if not runs:
        raise HierGenError(f"no run of recipe {recipe.name} under {save_dir}")
    if weight_statistics_runs(find_runs(runs)) >= MIN_RUNS and analysis(["hmm", *runs, "--out", report]) != 0:
        print("no training map: hmm did not fit (above)", file=sys.stderr)
    if analysis(["report", *runs, "--out", report, "--conditions", "prefix"]) != 0:
        raise HierGenError("report failed (above)")
    return os.path.join(report, "index.html")


def submit(recipe: Recipe, out: str, data_dir: str, per_task: int, sbatch_flags: list[str],
           analyse_command: list[str]) -> list[dict]:
    """One array per condition with unfinished seeds (`per_task` seeds per task through --seeds),
    then an analysis job that starts once they all succeeded (afterok); returns the jobs."""
    save_dir, logs, _ = paths(out)
    os.makedirs(logs, exist_ok=True)
    jobs = []
    for condition, seeds in unfinished(recipe, save_dir).items():
        flags = [*recipe.flags, *recipe.conditions[condition], "--wandb_mode", os.environ.get("WANDB_MODE", "disabled")]
        env = {"HIER_GEN_DIR": REPO, "PYTHON": sys.executable, "SEEDS": ",".join(map(str, seeds)),
               "SEEDS_PER_TASK": str(per_task), "PREFIX": condition, "SAVE_DIR": os.path.abspath(save_dir),
               "DATA_DIR": data_dir, "EXTRA_FLAGS": shlex.join(flags)}
        job = sbatch([f"--array=0-{math.ceil(len(seeds) / per_task) - 1}", f"--job-name=hg_{recipe.name}_{condition}",
                      f"--output={os.path.abspath(logs)}/%x_%A_%a.out", *sbatch_flags,
                      os.path.join(REPO, "submit_gpu.sh")], env)
        jobs.append({"job": job, "condition": condition, "seeds": seeds, "per_task": per_task})
    after = [f"--dependency=afterok:{':'.join(j['job'] for j in jobs)}"] if jobs else []
    job = sbatch([*after, f"--job-name=hg_{recipe.name}_report", f"--output={os.path.abspath(logs)}/%x_%j.out",
                  *sbatch_flags, "--wrap", shlex.join(analyse_command)], {})
    jobs.append({"job": job, "condition": None, "seeds": [], "per_task": 0})
    with open(os.path.join(out, JOBS_FILE), "w") as f:
        json.dump(jobs, f, indent=1)
    return jobs


def sbatch(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(["sbatch", "--parsable", *argv], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise HierGenError(f"sbatch failed: {done.stderr.strip()}")
    return done.stdout.strip().split(";")[0]


def running(out: str) -> set[tuple[str, int]]:
    """(condition, seed) pairs a live local process or a queued or running SLURM job trains."""
    _, logs, _ = paths(out)
    busy = set()
    for name in os.listdir(logs) if os.path.isdir(logs) else []:
        if name.endswith(".pid"):
            with open(os.path.join(logs, name)) as f:
                record = json.load(f)
            if alive(record["pid"]):
                busy.update((record["condition"], s) for s in record["seeds"])
    jobs_file = os.path.join(out, JOBS_FILE)
    if os.path.isfile(jobs_file):
        with open(jobs_file) as f:
            jobs = [j for j in json.load(f) if j["condition"]]
        queued = squeue([j["job"] for j in jobs])
        busy.update((j["condition"], s) for j in jobs if j["job"] in queued for s in j["seeds"])
    return busy


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


def squeue(job_ids: list[str]) -> set[str]:
    """Which of these (array) jobs SLURM still lists; none where squeue is not there."""
    if not job_ids:
        return set()
    try:
        done = subprocess.run(["squeue", "--noheader", "--array", "--format=%F", f"--jobs={','.join(job_ids)}"],
                              capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return set()
    return set(done.stdout.split())
