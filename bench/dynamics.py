"""Time `python -m analysis dynamics` on 1,000 synthetic runs of 150 evaluations each.

    python bench/dynamics.py [--runs 1000] [--evals 150] [--keep DIR]

Writes the runs as real run directories (args.json, metrics.jsonl with a line per evaluation and
the per-type accuracies of ~50 test types; per-step lines are left out), with a small QF data
folder so that the seen/unseen split is computed too, then times the command: reading, the
tables, and the figures. It also prints what parsing the JSON lines alone takes, the floor of
the reading. The last line is the throughput in runs per second.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analysis import seen  # noqa: E402
from analysis.__main__ import main as analysis_main  # noqa: E402
from analysis.dynamics import logged_names  # noqa: E402
from analysis.runs import find_runs, read_runs  # noqa: E402
from config import build_parser  # noqa: E402
from data_utils import question  # noqa: E402
from data_utils.lines import split_line  # noqa: E402

# Condition (learning rate) -> the kinds of trajectory its seeds follow, with their weights.
CONDITIONS = {"1e-4": {"hierarchical": 0.9, "unstable": 0.1},
              "3e-4": {"hierarchical": 0.5, "linear": 0.5},
              "1e-3": {"unstable": 1.0},
              "3e-3": {"linear": 0.9, "unstable": 0.1},
              "1e-2": {"memorizing": 1.0}}
EVAL_EVERY = 2000


def write_data(data_dir: str, rng: random.Random) -> pd.DataFrame:
    """A small QF data folder drawn from the grammar; its test types (metric key -> lines, seen)."""
    def lines(shares: dict, n: int, marker: str | None = None, pools=("iid",)) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            frame, numbers = question.GRAMMAR.sample(rng, shares)
            words = question.GRAMMAR.realize(rng, frame, numbers)
            pool, _, text = question.render(frame, words, marker or rng.choice(question.MARKERS))
            if pool in pools:
                out.append(text)
        return out

    train = lines(question.CFG["shares"]["iid"], 300)
    test = lines(question.CFG["shares"]["gen"], 2000, "quest", ("gen_src", "gen_orc"))
    types = [question.parse_line(*split_line(line)).type_tag for line in test]
    folder = os.path.join(data_dir, "question_formation_data")
    os.makedirs(folder)
    for name, content in {"train": train, "val": train[:50], "test": test, "test.type": types}.items():
        with open(os.path.join(folder, f"question.{name}"), "w") as f:
            f.write("".join(line + "\n" for line in content))
    return seen.type_table({"dataset": "question", "data_dir": data_dir})


def trajectory(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """A synthetic test_aux series of one of the four behaviours the analysis tells apart."""
    t = np.linspace(0, 1, n)
    if kind == "hierarchical":
        a = 1 / (1 + np.exp(-(t - rng.uniform(0.1, 0.5)) * 40))
    elif kind == "linear":
        a = 0.05 * np.exp(-t * 5)
    elif kind == "memorizing":
        a = 0.45 / (1 + np.exp(-(t - 0.2) * 40))
    else:
        a = 1 / (1 + np.exp(-np.cumsum(rng.normal(0, 0.8, n))))
    return np.clip(a + rng.normal(0, 0.003, n), 0, 1)


def write_runs(root: str, n_runs: int, n_evals: int, seed: int = 0) -> list[str]:
    """n_runs run directories spread over CONDITIONS; their paths."""
    rng, py_rng = np.random.default_rng(seed), random.Random(seed)
    data_dir = os.path.join(root, "data")
    types = write_data(data_dir, py_rng)
    type_keys, type_seen = list(types.index), types["seen"].to_numpy(bool)
    steps = np.arange(n_evals) * EVAL_EVERY
    paths = []
    for i in range(n_runs):
        lr = list(CONDITIONS)[i % len(CONDITIONS)]
        kinds = CONDITIONS[lr]
        kind = rng.choice(list(kinds), p=list(kinds.values()))
        a = trajectory(rng, kind, n_evals)
        # A memorizing seed is right on the types it trained on and wrong elsewhere.
        per_type = (np.where(type_seen, 0.9, 0.05)[None, :] if kind == "memorizing" else a[:, None]) \
            + rng.normal(0, 0.003, (n_evals, len(type_keys)))
        argv = ["--dataset", "question", "--lr", lr, "--seed", str(i), "--data_dir", data_dir, "--callback",
                "--max_train_steps", str(steps[-1]), "--eval_every", str(EVAL_EVERY),
                "--save_dir", root, "--save_prefix", f"lr{lr}_seed{i}"]
        path = os.path.join(root, f"lr{lr}_seed{i}")
        os.makedirs(path)
        with open(os.path.join(path, "args.json"), "w") as f:
            json.dump(vars(build_parser().parse_args(argv)), f, indent=4)
        with open(os.path.join(path, "metrics.jsonl"), "w") as f:
            for k, step in enumerate(steps):
                event = {"curr-test-ppl": 1.0 - 0.5 * a[k], "test_aux": a[k], "test_hierarchical": a[k],
                         "test_linear": (1 - a[k]) * 0.98, "test_other": (1 - a[k]) * 0.02,
                         **dict(zip(type_keys, np.clip(per_type[k], 0, 1))), "iteration": int(step)}
                f.write(json.dumps({key: float(v) for key, v in event.items()}) + "\n")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--evals", type=int, default=150)
    parser.add_argument("--keep", default=None, help="write the runs and outputs here and keep them")
    args = parser.parse_args()
    root = args.keep or tempfile.mkdtemp(prefix="bench_dynamics_")
    start = time.perf_counter()
    paths = write_runs(os.path.join(root, "runs"), args.runs, args.evals)
    print(f"wrote {args.runs} runs x {args.evals} evaluations in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    code = analysis_main(["dynamics", os.path.join(root, "runs", "lr*"), "--out", os.path.join(root, "analysis")])
    seconds = time.perf_counter() - start
    assert code == 0
    megabytes, parse = json_floor(paths)
    serial, parallel = read_times(root)
    if not args.keep:
        shutil.rmtree(root)
    print(f"metrics.jsonl: {megabytes:.0f} MB; json.loads of every line alone: {parse:.2f} s")
    print(f"reading the runs: {serial:.2f} s in one process, {parallel:.2f} s in "
          f"{len(os.sched_getaffinity(0))} (one per core): {serial / parallel:.2f}x")
    print(f"dynamics on {args.runs} runs: {seconds:.2f} s ({seconds / parse:.2f}x the JSON parse alone)")
    print(f"{args.runs / seconds:.0f} runs/s")


def read_times(root: str) -> tuple[float, float]:
    """Seconds to read every run's metrics in this process and with one worker per core."""
    runs = find_runs([os.path.join(root, "runs", "lr*")])
    names = logged_names()
    times = []
    for workers in (1, None):
        start = time.perf_counter()
        read_runs(runs, names, workers)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def json_floor(paths: list[str]) -> tuple[float, float]:
    """Size of the runs' metrics files, and the seconds json.loads takes over their lines."""
    size = sum(os.path.getsize(os.path.join(p, "metrics.jsonl")) for p in paths)
    start = time.perf_counter()
    for path in paths:
        with open(os.path.join(path, "metrics.jsonl")) as f:
            for line in f:
                json.loads(line)
    return size / 1e6, time.perf_counter() - start


if __name__ == "__main__":
    main()
