"""Time `python -m analysis predict` on 1,000 synthetic runs of 150 evaluations each.

    python bench/predict.py [--runs 1000] [--evals 150] [--types 50] [--keep DIR]

Writes the runs as real run directories (args.json, and metrics.jsonl with a line per evaluation:
test_aux and the QF rule shares as bench/dynamics.py draws them, `--types` per-type accuracies, which
make the lines as long as a real run's, and the 14 weight statistics), then times the whole command:
reading, features, the fits at every cut-off and the figure. The weight statistics drift with the
kind of trajectory a run follows from 5% of training on, so the outcome of the runs that do not
oscillate is told early; the oscillating ones end where their random walk does. The last line is
the command's wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np

from dynamics import CONDITIONS, EVAL_EVERY, trajectory  # bench/dynamics.py

from analysis.__main__ import main as analysis_main
from models.weight_statistics import NAMES

KINDS = ("hierarchical", "linear", "memorizing", "unstable")
ONSET = 0.05  # share of training after which the weights drift by kind


def weight_statistics(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """n evaluations of the 14 statistics: a common drift, noise, and from ONSET on a drift by kind."""
    t = np.linspace(0, 1, n)[:, None]
    by_kind = np.eye(len(KINDS), len(NAMES))[KINDS.index(kind)]
    return 1 + t + np.clip(t - ONSET, 0, None) * 2 * by_kind + rng.normal(0, 0.05, (n, len(NAMES)))


def write_runs(root: str, n_runs: int, n_evals: int, n_types: int, seed: int = 0) -> None:
    """n_runs run directories spread over bench/dynamics.py's CONDITIONS."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n_evals) * EVAL_EVERY
    types = [f"test_aux_type/det n_s rel aux_s v_intrans type{j}" for j in range(n_types)]
    for i in range(n_runs):
        lr = list(CONDITIONS)[i % len(CONDITIONS)]
        kinds = CONDITIONS[lr]
        kind = rng.choice(list(kinds), p=list(kinds.values()))
        a, weights = trajectory(rng, kind, n_evals), weight_statistics(rng, kind, n_evals)
        per_type = np.clip(a[:, None] + rng.normal(0, 0.01, (n_evals, n_types)), 0, 1)
        path = os.path.join(root, f"lr{lr}_seed{i}")
        os.makedirs(path)
        with open(os.path.join(path, "args.json"), "w") as f:
            json.dump({"dataset": "question", "lr": float(lr), "seed": i, "max_train_steps": int(steps[-1])}, f)
        with open(os.path.join(path, "metrics.jsonl"), "w") as f:
            for k, step in enumerate(steps):
                event = {"test_aux": a[k], "test_hierarchical": a[k], "test_linear": (1 - a[k]) * 0.98,
                         **dict(zip(types, per_type[k])), **dict(zip(NAMES, weights[k])), "iteration": int(step)}
                f.write(json.dumps({key: float(v) for key, v in event.items()}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--evals", type=int, default=150)
    parser.add_argument("--types", type=int, default=50, help="per-type accuracies on each evaluation line")
    parser.add_argument("--keep", default=None, help="write the runs and outputs here and keep them")
    args = parser.parse_args()
    root = args.keep or tempfile.mkdtemp(prefix="bench_predict_")
    start = time.perf_counter()
    write_runs(os.path.join(root, "runs"), args.runs, args.evals, args.types)
    print(f"wrote {args.runs} runs x {args.evals} evaluations in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    code = analysis_main(["predict", os.path.join(root, "runs", "lr*"), "--out", os.path.join(root, "analysis")])
    seconds = time.perf_counter() - start
    assert code == 0
    if not args.keep:
        shutil.rmtree(root)
    print(f"predict on {args.runs} runs x {args.evals} evaluations: {seconds:.1f} s")


if __name__ == "__main__":
    main()
