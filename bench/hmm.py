"""Time `python -m analysis hmm`'s fit on 20 synthetic runs of 150 evaluations of the 14 weight statistics.

    python bench/hmm.py [--runs 20] [--evals 150] [--states 4]

The runs are generated in this process from a left-to-right process of `--states` regimes (each a mean
of the 14 statistics, entered at a random evaluation of each run, with noise and a slow drift), and
fed to analysis.hmm.training_map with the default settings: 1..8 states × 5 restarts, held-out
selection, Viterbi paths, detours. Then every fit is repeated alone to break the time down: seconds,
EM iterations and whether it converged before the cap (analysis.hmm.N_ITER). The last line is the
whole fit's wall time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analysis.hmm import (N_ITER, Settings, evaluations, fit_states, split, training_map,  # noqa: E402
                          zscore)
from models.weight_statistics import NAMES  # noqa: E402

EVAL_EVERY = 2000


def synthetic_runs(n_runs: int, n_evals: int, n_states: int, seed: int = 0
                   ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """A run table and each run's frame (the 14 statistics and test_aux by step), as read_runs returns them."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 2, (n_states, len(NAMES)))
    drift = rng.normal(0, 0.5, len(NAMES))
    steps = np.arange(n_evals) * EVAL_EVERY
    frames = {}
    for i in range(n_runs):
        starts = np.sort(rng.choice(np.arange(1, n_evals), n_states - 1, replace=False))
        regime = np.searchsorted(starts, np.arange(n_evals), side="right")
        x = means[regime] + np.linspace(0, 1, n_evals)[:, None] * drift + rng.normal(0, 0.5, (n_evals, len(NAMES)))
        test_aux = np.where(regime == n_states - 1, 0.95, 0.1)
        frames[f"run{i}"] = pd.DataFrame(x, index=pd.Index(steps, name="step"), columns=list(NAMES)).assign(
            test_aux=test_aux)
    table = pd.DataFrame({"run": list(frames), "condition": "synthetic",
                          "seed": pd.array(range(n_runs), dtype="Int64")})
    return table, frames


def breakdown(frames: dict[str, pd.DataFrame], s: Settings) -> pd.DataFrame:
    """Every (state count, restart) fit alone: seconds, EM iterations, converged."""
    rows = evaluations(frames, s.metric)
    fit, heldout = split(list(frames), s.seed)
    series = {name: zscore(rows[name][list(NAMES)].to_numpy(float)) for name in frames}
    out = []
    for n_states in range(1, s.max_states + 1):
        for restart, random_state in enumerate(np.random.SeedSequence(s.seed).generate_state(s.restarts)):
            start = time.perf_counter()
            model, _ = fit_states([series[n] for n in fit], [series[n] for n in heldout], n_states, [random_state])
            out.append({"n_states": n_states, "restart": restart, "seconds": time.perf_counter() - start,
                        "iterations": model.monitor_.iter, "converged": model.monitor_.converged})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--evals", type=int, default=150)
    parser.add_argument("--states", type=int, default=4, help="regimes of the synthetic process")
    args = parser.parse_args()
    table, frames = synthetic_runs(args.runs, args.evals, args.states)
    s = Settings()
    start = time.perf_counter()
    selection, states, _, detours = training_map(table, frames, s)
    seconds = time.perf_counter() - start
    print(selection.to_string(index=False, float_format="%.1f"))
    print(detours.to_string(index=False, float_format="%.3g", na_rep="-"))
    fits = breakdown(frames, s)
    per_count = fits.groupby("n_states").agg(seconds=("seconds", "sum"), mean_iterations=("iterations", "mean"),
                                             max_iterations=("iterations", "max"), converged=("converged", "sum"))
    print(f"each state count, its {s.restarts} restarts together (EM capped at {N_ITER} iterations):")
    print(per_count.to_string(float_format="%.2f"))
    print(f"fits alone: {fits['seconds'].sum():.2f} s; {int(fits['converged'].sum())} of {len(fits)} converged, "
          f"at most {fits['iterations'].max()} iterations")
    print(f"hmm on {args.runs} runs x {args.evals} evaluations ({args.states} synthetic regimes, "
          f"{s.max_states} state counts x {s.restarts} restarts): {seconds:.2f} s")


if __name__ == "__main__":
    main()
