"""Time `python -m analysis hmm`'s fit on synthetic runs of the 14 weight statistics; or compare its two
z-scorings on sweeps of known state processes.

    python bench/hmm.py [--runs 20] [--evals 150] [--states 4]
    python bench/hmm.py --compare_zscore

The runs come from `sweep`, a left-to-right process of known states (tests/test_analysis_hmm.py draws
its sweeps from it too). Timing: analysis.hmm.training_map with the default settings (1..8 states x 5
restarts, held-out selection, Viterbi paths, detours), then every fit repeated alone to break the time
down: seconds, EM iterations and whether it converged before the cap (analysis.hmm.N_ITER); the last
line is the whole fit's wall time. --compare_zscore: on SWEEPS, with the runs' shares of the states
drawn two ways (`even` 0 and 0.5), the state count chosen with `--zscore global` and with `per_run`,
and the adjusted Rand index of the Viterbi states against the truth; the last lines count the sweeps
where each chose the true count.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analysis.hmm import (N_ITER, ZSCORES, Settings, evaluations, fit_restart, quiet,  # noqa: E402
                          split, standardise, training_map)
from models.weight_statistics import NAMES  # noqa: E402

EVAL_EVERY = 100
# sweep's arguments (states, separation, noise, runs, evaluations, constant statistics, short runs):
# cleanly separated processes, separation / noise >= 2.5
SWEEPS = [(2, 3.0, 1.0, 20, 100, 0, False), (3, 3.0, 1.0, 20, 100, 2, False), (4, 5.0, 2.0, 20, 150, 0, True),
          (6, 4.0, 1.0, 30, 150, 1, False), (3, 1.0, 0.4, 10, 80, 0, True), (4, 6.0, 2.0, 50, 60, 3, False),
          (2, 0.5, 0.1, 10, 50, 0, False), (5, 6.0, 2.0, 15, 300, 2, True)]


def sweep(n_states: int, separation: float, noise: float, n_runs: int, n_evals: int, n_constant: int = 0,
          short_runs: bool = False, seed: int = 0, even: float = 0.5
          ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict]:
    """A run table and frames as analysis.runs.read_runs returns them, and each run's true state per evaluation.

    Every run visits states 0..n_states-1 in order, spending its own share of its evaluations in each:
    `even` of an equal share plus 1 - even of a Dirichlet(2) draw (even = 0: the runs' shares vary
    most; 0.5 leaves no state to a few evaluations of a run). Between consecutive states each statistic
    moves by ±separation; every evaluation adds Gaussian noise of SD `noise`. Each statistic then gets
    a scale of its own (1e-3 to 1e2) and an offset, as the logged ones have; the last `n_constant` never
    change. With short_runs, each run has 60-100% of n_evals evaluations of its own. test_aux is 0.95
    in the last state, else 0.1.
    """
    rng = np.random.default_rng(seed)
    n_features = len(NAMES)
    means = np.vstack([np.zeros(n_features),
                       np.cumsum(rng.choice([-separation, separation], (n_states - 1, n_features)), 0)])
    scale = 10.0 ** rng.uniform(-3, 2, n_features)
    offset = rng.normal(0, 10, n_features) * scale
    frames, truth = {}, {}
    for i in range(n_runs):
        length = rng.integers(int(0.6 * n_evals), n_evals + 1) if short_runs else n_evals
        shares = even / n_states + (1 - even) * rng.dirichlet(np.full(n_states, 2.0))
        path = np.searchsorted(np.round(np.cumsum(shares)[:-1] * length), np.arange(length), side="right")
        x = offset + scale * (means[path] + rng.normal(0, noise, (len(path), n_features)))
        x[:, n_features - n_constant:] = offset[n_features - n_constant:]
        steps = pd.Index(np.arange(len(path)) * EVAL_EVERY, name="step")
        frames[f"run{i}"] = pd.DataFrame(x, index=steps, columns=list(NAMES)).assign(
            test_aux=np.where(path == n_states - 1, 0.95, 0.1))
        truth[f"run{i}"] = path
    table = pd.DataFrame({"run": list(frames), "condition": "synthetic",
                          "seed": pd.array(range(n_runs), dtype="Int64")})
    return table, frames, truth


def breakdown(frames: dict[str, pd.DataFrame], s: Settings) -> pd.DataFrame:
    """Every (state count, restart) fit alone: seconds, EM iterations, converged (a dropped restart: NaN)."""
    rows = evaluations(frames, s.metric)
    fit, heldout = split(list(frames), s.seed)
    series = dict(zip(frames, standardise([rows[n][list(NAMES)].to_numpy(float) for n in frames], s.zscore)))
    out = []
    for n_states in range(1, s.max_states + 1):
        for restart, random_state in enumerate(np.random.SeedSequence(s.seed).generate_state(s.restarts)):
            start = time.perf_counter()
            with quiet():
                fitted = fit_restart([series[n] for n in fit], [series[n] for n in heldout], n_states,
                                     int(random_state))
            monitor = fitted[0].monitor_ if fitted else None
            out.append({"n_states": n_states, "restart": restart, "seconds": time.perf_counter() - start,
                        "iterations": monitor.iter if monitor else np.nan,
                        "converged": monitor.converged if monitor else np.nan})
    return pd.DataFrame(out)


def time_fit(args: argparse.Namespace) -> None:
    table, frames, _ = sweep(args.states, 2.0, 0.5, args.runs, args.evals)
    s = Settings()
    start = time.perf_counter()
    selection, states, _, detours = training_map(table, frames, s)
    seconds = time.perf_counter() - start
    print(selection.to_string(index=False, float_format="%.2f", na_rep="-"))
    print(detours.to_string(index=False, float_format="%.3g", na_rep="-"))
    fits = breakdown(frames, s)
    per_count = fits.groupby("n_states").agg(seconds=("seconds", "sum"), mean_iterations=("iterations", "mean"),
                                             max_iterations=("iterations", "max"), converged=("converged", "sum"))
    print(f"each state count, its {s.restarts} restarts together (EM capped at {N_ITER} iterations):")
    print(per_count.to_string(float_format="%.2f"))
    print(f"fits alone: {fits['seconds'].sum():.2f} s; {int(fits['converged'].sum())} of {len(fits)} converged, "
          f"{int(fits['iterations'].isna().sum())} dropped, at most {fits['iterations'].max():.0f} iterations")
    print(f"hmm on {args.runs} runs x {args.evals} evaluations ({args.states} synthetic states, "
          f"{s.max_states} state counts x {s.restarts} restarts): {seconds:.2f} s")


def compare_zscore() -> None:
    rows = []
    for even in (0.0, 0.5):
        for args in SWEEPS:
            table, frames, truth = sweep(*args, even=even)
            row = dict(zip(["true_states", "separation", "noise", "runs", "evals", "constant", "short_runs"], args),
                       even=even)
            for how in ZSCORES:
                selection, states, _, _ = training_map(table, frames, Settings(zscore=how))
                row[f"{how}_chosen"] = int(selection.loc[selection["selected"], "n_states"].iloc[0])
                row[f"{how}_ari"] = adjusted_rand_score(np.concatenate([truth[n] for n in table["run"]]),
                                                        states["state"])
            rows.append(row)
            print(", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                  flush=True)
    result = pd.DataFrame(rows)
    print(result.to_string(index=False, float_format="%.2f"))
    for even, part in result.groupby("even"):
        right = {how: int((part[f"{how}_chosen"] == part["true_states"]).sum()) for how in ZSCORES}
        print(f"even {even}: true count chosen in {right['global']} of {len(part)} sweeps with --zscore global, "
              f"{right['per_run']} with per_run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--evals", type=int, default=150)
    parser.add_argument("--states", type=int, default=4, help="states of the synthetic process")
    parser.add_argument("--compare_zscore", action="store_true", help="global against per_run on SWEEPS")
    args = parser.parse_args()
    if args.compare_zscore:
        compare_zscore()
    else:
        time_fit(args)


if __name__ == "__main__":
    main()
