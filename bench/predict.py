"""Time `python -m analysis predict` on 1,000 synthetic runs of 150 evaluations each.

    python bench/predict.py [--runs 1000] [--evals 150] [--types 50] [--keep DIR]
    python bench/predict.py --fits [--runs 1000]

Writes the runs as real run directories (args.json, and metrics.jsonl with a line per evaluation:
test_aux and the QF rule shares as bench/dynamics.py draws them, `--types` per-type accuracies, which
make the lines as long as a real run's, and the 14 weight statistics), then times the whole command:
reading, features, the fits at every cut-off and the figure. The weight statistics drift with the
kind of trajectory a run follows from 5% of training on, so the outcome of the runs that do not
oscillate is told early; the oscillating ones end where their random walk does. The last line is
the command's wall time.

With --fits it times only the models of one cut-off, the command's batched Newton fits against
scikit-learn's LogisticRegression and Ridge fitted one fold at a time (what they equal, tested), in
alternating rounds; its last line is scikit-learn's time over the batched fits' time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from dynamics import CONDITIONS, EVAL_EVERY, trajectory  # bench/dynamics.py

from analysis.__main__ import main as analysis_main
from analysis.predict import Settings, ridge, softmax_regression
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


def fits_ratio(n_runs: int, n_features: int = 35, rounds: int = 3, seed: int = 0) -> float:
    """scikit-learn's time over the batched fits' time for one cut-off: 5 folds, the outcomes and one
    shuffling of them, a 3-class logistic regression and a ridge regression each."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n_runs)
    x = rng.normal(size=(n_runs, n_features)) + y[:, None] * 0.3
    end = x[:, 0] + rng.normal(size=n_runs)
    labels, ends = np.stack([y, rng.permutation(y)]), np.stack([end, rng.permutation(end)])
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, y))
    held_out = np.stack([np.isin(np.arange(n_runs), test) for _, test in folds])
    s = Settings()

    def batched():
        softmax_regression(x, held_out, labels, 3, s.C)
        ridge(x, held_out, ends, s.alpha)

    def one_at_a_time():
        for train, _ in folds:
            for target, value in zip(labels, ends):
                make_pipeline(StandardScaler(), LogisticRegression(C=s.C)).fit(x[train], target[train])
                make_pipeline(StandardScaler(), Ridge(alpha=s.alpha)).fit(x[train], value[train])

    times = {batched: [], one_at_a_time: []}
    with threadpool_limits(1):
        for _ in range(rounds):
            for fit in times:
                start = time.perf_counter()
                fit()
                times[fit].append(time.perf_counter() - start)
    plain, fast = np.median(times[one_at_a_time]), np.median(times[batched])
    print(f"one cut-off's fits, {n_runs} runs x {n_features} features: scikit-learn {plain:.3f} s, "
          f"batched {fast:.3f} s")
    return plain / fast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--evals", type=int, default=150)
    parser.add_argument("--types", type=int, default=50, help="per-type accuracies on each evaluation line")
    parser.add_argument("--keep", default=None, help="write the runs and outputs here and keep them")
    parser.add_argument("--fits", action="store_true", help="time one cut-off's fits against scikit-learn's")
    args = parser.parse_args()
    if args.fits:
        print(f"scikit-learn time / batched time: {fits_ratio(args.runs):.2f}")
        return
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
