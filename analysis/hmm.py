"""Hidden Markov models of training dynamics: the latent states runs pass through, from their weight statistics.

    python -m analysis hmm RUN... [--metric test_aux] [--max_states 8] [--restarts 5] [--seed 0] [--out DIR]

The 14 weight statistics a run logs at every evaluation (`weights/...`, models/weight_statistics.py)
are z-scored within the run, per statistic, and read as the emissions of one Gaussian HMM (diagonal
covariances) shared by all runs (Hu, Chen, Saphra & Cho 2023, "Latent State Models of Training
Dynamics"). Models of 1..max_states states are fitted on 80% of the runs, each from several
initialisations of which the one with the best likelihood on the other 20% is kept; the count with
the lowest BIC on those held-out runs is selected. Its Viterbi paths give every run's state at every
evaluation; states are numbered by when training visits them (state 0 the earliest on average).

    hmm_selection.csv    per state count: held-out log-likelihood per run (mean, sd), AIC, BIC, selected
    hmm_states.csv       run, seed, step, state: every run's Viterbi path (fit and held-out runs alike)
    hmm_transitions.csv  from_state, to_state: the fitted probability and how often the paths make it
    hmm_detours.csv      per state: the runs visiting it; Pearson r and p of visiting it against the
                         convergence step (first step with the metric >= 0.9, else the last step);
                         obligatory (every run visits it), detour (an optional state whose visitors
                         converge significantly later: r > 0, p < 0.05)
    hmm_graph.png        the states and the transitions the Viterbi paths make
    hmm_curves.png       the metric and each statistic over training, every evaluation coloured by state

Only the evaluations that logged all 14 statistics and the metric are read.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
from hmmlearn.hmm import GaussianHMM
from scipy.stats import pearsonr
from threadpoolctl import threadpool_limits

import plot
from analysis.outputs import write_csv
from analysis.runs import find_runs, read_runs
from config import check_seed
from models.weight_statistics import NAMES, PREFIX
from util import HierGenError, check_folder_can_be_made

CONVERGED = 0.9      # a run has converged at its first evaluation with the metric at least this
HELDOUT_SHARE = 0.2  # of the runs, held out to choose the number of states
MIN_RUNS = 5         # the fewest runs of which 20% is a whole held-out run
N_ITER = 200         # EM iterations at most; bench/hmm.py counts how many a fit takes
# EM stops once an iteration gains less than this many nats per evaluation. hmmlearn's default, 0.01
# nats in all, asks 4e-6 per evaluation of 2,400 and keeps over-parameterised models crawling for up
# to 150 iterations: on 20 runs x 150 evaluations of 3 regimes this one fits 1.7 times faster, the
# held-out BICs within 0.25% and the same count selected.
TOL_PER_EVALUATION = 1e-4
SIGNIFICANCE = 0.05  # of a detour's correlation with slow convergence


@dataclass(frozen=True)
class Settings:
    """The parameters a researcher may change, with their defaults."""

    metric: str = "test_aux"
    max_states: int = 8
    restarts: int = 5
    seed: int = 0  # of the split into fit and held-out runs and of the restarts' initialisations


def evaluations(frames: dict[str, pd.DataFrame], metric: str) -> dict[str, pd.DataFrame]:
    """Each run's evaluations that logged every weight statistic and the metric: those columns, by step."""
    out = {}
    for name, frame in frames.items():
        missing = [n for n in NAMES if n not in frame or frame[n].isna().all()]
        if missing:
            what = f"the weight statistics ({PREFIX}...)" if len(missing) == len(NAMES) else ", ".join(missing)
            raise HierGenError(f"run {name} never logged {what}: training logs them at each evaluation "
                               "unless run with --no_weight_stats")
        if metric not in frame or frame[metric].isna().all():
            raise HierGenError(f"metric {metric} was never logged by run {name}")
        rows = frame[[*NAMES, metric]].dropna()
        if rows.empty:
            raise HierGenError(f"run {name} never logged {metric} at an evaluation with the weight statistics")
        out[name] = rows
    return out


def zscore(x: np.ndarray) -> np.ndarray:
    """Each column to mean 0 and variance 1; a column constant within the run to 0 (tested exactly:
    rounding gives a constant column a tiny nonzero spread that would blow up)."""
    constant = (x == x[0]).all(0)
    sd = np.where(constant, 1.0, x.std(0))
    return np.where(constant, 0.0, (x - x.mean(0)) / sd)


def split(names: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Fit and held-out runs: 20% of the runs, drawn from `seed`, held out; each list in the given order."""
    if len(names) < MIN_RUNS:
        raise HierGenError(f"hmm needs at least {MIN_RUNS} runs, to fit the states on 80% of them and choose "
                           f"their number on the other 20% (one run at least); got {len(names)}")
    heldout = set(np.random.default_rng(seed).permutation(len(names))[:int(len(names) * HELDOUT_SHARE)])
    return ([n for i, n in enumerate(names) if i not in heldout], [n for i, n in enumerate(names) if i in heldout])


def n_parameters(n_states: int, n_features: int) -> int:
    """Free parameters of a diagonal Gaussian HMM: start and transition probabilities, means, variances."""
    return n_states - 1 + n_states * (n_states - 1) + 2 * n_states * n_features


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """One thread, and hmmlearn's log lines (a log-likelihood that dips by rounding, a state left
    without evaluations) and scikit-learn's k-means warnings (fewer distinct points than states) silenced.

    The k-means that initialises a fit is small: its OpenMP threads gain nothing, and while another
    process holds a core they spin-wait and made the whole fit 15 times slower on a shared 2-core machine.
    """
    logger = logging.getLogger("hmmlearn")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def fit_hmm(x: np.ndarray, lengths: list[int], n_states: int, random_state: int,
            implementation: str = "scaling") -> GaussianHMM:
    """One EM fit, left to score and decode in log space.

    EM runs in hmmlearn's scaling implementation: three times faster than log space and the same fit
    (on 20 tiny runs, every state count's held-out BIC to 0.1; tested). An evaluation that no state
    explains underflows it, and such data are fitted in log space.
    """
    def model(implementation: str) -> GaussianHMM:
        return GaussianHMM(n_states, covariance_type="diag", n_iter=N_ITER, tol=TOL_PER_EVALUATION * len(x),
                           random_state=random_state, implementation=implementation)
    try:
        fitted = model(implementation).fit(x, lengths)
    except ValueError:  # "forward pass failed with underflow"
        fitted = model("log").fit(x, lengths)
    fitted.implementation = "log"  # a held-out run may hold what the fit runs did not
    return fitted


def fit_states(fit: list[np.ndarray], heldout: list[np.ndarray], n_states: int,
               random_states: np.ndarray) -> tuple[GaussianHMM, np.ndarray]:
    """The restart (one per random state) with the best held-out likelihood, and that likelihood per held-out run."""
    x, lengths = np.concatenate(fit), [len(f) for f in fit]
    best = None
    with quiet():
        for random_state in random_states:
            model = fit_hmm(x, lengths, n_states, int(random_state))
            scores = np.array([model.score(h) for h in heldout])
            if best is None or scores.sum() > best[1].sum():
                best = model, scores
    return best


def select(fit: list[np.ndarray], heldout: list[np.ndarray], s: Settings) -> tuple[pd.DataFrame, GaussianHMM]:
    """hmm_selection.csv, and the model of the state count with the lowest held-out BIC."""
    x, lengths = np.concatenate(heldout), [len(h) for h in heldout]
    random_states = np.random.SeedSequence(s.seed).generate_state(s.restarts)
    rows, models = [], []
    for n_states in range(1, s.max_states + 1):
        model, scores = fit_states(fit, heldout, n_states, random_states)
        with quiet():
            rows.append({"n_states": n_states, "heldout_loglik_mean": scores.mean(),
                         "heldout_loglik_sd": pd.Series(scores).std(), "aic": model.aic(x, lengths),
                         "bic": model.bic(x, lengths)})
        models.append(model)
    table = pd.DataFrame(rows)
    best = int(table["bic"].idxmin())
    table["selected"] = table.index == best
    return table, models[best]


def canonical_labels(paths: list[np.ndarray], n_states: int) -> np.ndarray:
    """new label of each fitted state: states in order of the mean relative position in training
    (0 at the first evaluation, 1 at the last) of the evaluations assigned to them; unvisited ones last."""
    position = np.concatenate([np.linspace(0, 1, len(p)) for p in paths])
    states = np.concatenate(paths)
    mean = [position[states == k].mean() if (states == k).any() else np.inf for k in range(n_states)]
    labels = np.empty(n_states, int)
    labels[np.argsort(mean, kind="stable")] = np.arange(n_states)
    return labels


def transition_table(model: GaussianHMM, paths: list[np.ndarray], labels: np.ndarray) -> pd.DataFrame:
    """hmm_transitions.csv from the fitted matrix and the (relabelled) Viterbi paths."""
    n = model.n_components
    fitted = np.argsort(labels)  # the fitted state behind each new label
    counts = np.zeros((n, n), int)
    for path in paths:
        np.add.at(counts, (path[:-1], path[1:]), 1)
    from_state, to_state = np.divmod(np.arange(n * n), n)
    return pd.DataFrame({"from_state": from_state, "to_state": to_state,
                         "probability": model.transmat_[np.ix_(fitted, fitted)].ravel(), "count": counts.ravel()})


def convergence_step(steps: np.ndarray, values: np.ndarray) -> float:
    """The first step with the metric at CONVERGED or above; the last step for a run that never gets there."""
    reached = np.flatnonzero(values >= CONVERGED)
    return float(steps[reached[0] if reached.size else -1])


def detour_table(states: pd.DataFrame, converged: pd.Series, n_states: int) -> pd.DataFrame:
    """hmm_detours.csv: for each state, visiting it (0/1 per run) against the run's convergence step."""
    visits = pd.crosstab(states["run"], states["state"]).reindex(index=converged.index, columns=range(n_states),
                                                                 fill_value=0) > 0
    step = converged.to_numpy(float)
    rows = []
    for state in range(n_states):
        visited = visits[state].to_numpy(float)
        r, p = (np.nan, np.nan) if np.ptp(visited) == 0 or np.ptp(step) == 0 else pearsonr(visited, step)
        obligatory = bool(visited.all())
        rows.append({"state": state, "n_runs_visiting": int(visited.sum()), "r": r, "p": p,
                     "obligatory": obligatory, "detour": bool(not obligatory and r > 0 and p < SIGNIFICANCE)})
    return pd.DataFrame(rows)


def training_map(table: pd.DataFrame, frames: dict[str, pd.DataFrame], s: Settings = Settings()
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """hmm_selection, hmm_states, hmm_transitions and hmm_detours as DataFrames, from the run table
    and each run's logged weight statistics and metric (analysis.runs.read_runs)."""
    rows = evaluations(frames, s.metric)
    names = list(table["run"])
    series = {name: zscore(rows[name][list(NAMES)].to_numpy(float)) for name in names}
    fit, heldout = split(names, s.seed)
    n_fit, needed = sum(len(series[n]) for n in fit), n_parameters(s.max_states, len(NAMES))
    if n_fit < needed:
        raise HierGenError(f"too few evaluations to fit {s.max_states} states: the {len(fit)} fit runs hold "
                           f"{n_fit}, a model of {s.max_states} states has {needed} parameters "
                           "(ask for fewer with --max_states)")
    selection, model = select([series[n] for n in fit], [series[n] for n in heldout], s)
    with quiet():
        paths = [model.decode(series[name])[1] for name in names]
    labels = canonical_labels(paths, model.n_components)
    paths = [labels[path] for path in paths]
    seeds = dict(zip(table["run"], table["seed"]))
    states = pd.DataFrame({"run": np.repeat(names, [len(p) for p in paths]),
                           "seed": pd.array(np.repeat([seeds[n] for n in names], [len(p) for p in paths]),
                                            dtype="Int64"),
                           "step": np.concatenate([rows[n].index.to_numpy() for n in names]),
                           "state": np.concatenate(paths)})
    converged = pd.Series({n: convergence_step(rows[n].index.to_numpy(), rows[n][s.metric].to_numpy(float))
                           for n in names})
    return (selection, states, transition_table(model, paths, labels),
            detour_table(states, converged, model.n_components))


def state_curves(states: pd.DataFrame, frames: dict[str, pd.DataFrame], metric: str) -> pd.DataFrame:
    """Long table for plot.hmm_curves: metric (the convergence metric, then each statistic), run,
    step, value, state."""
    parts = []
    for name, path in states.groupby("run", sort=False):
        values = frames[name].loc[path["step"].to_numpy(), [metric, *NAMES]]
        for column in values:
            parts.append(pd.DataFrame({"metric": column, "run": name, "step": path["step"].to_numpy(),
                                       "value": values[column].to_numpy(float), "state": path["state"].to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories or globs of them")
    parser.add_argument("--metric", default=Settings.metric,
                        help="the convergence metric: converged at its first value >= 0.9 (default: test_aux)")
    parser.add_argument("--max_states", type=int, default=Settings.max_states,
                        help="fit models of 1..max_states states (default: 8)")
    parser.add_argument("--restarts", type=int, default=Settings.restarts,
                        help="initialisations per state count; the best on the held-out runs is kept (default: 5)")
    parser.add_argument("--seed", type=int, default=Settings.seed,
                        help="seed of the held-out runs and of the initialisations (default: 0)")
    parser.add_argument("--out", default="analysis", help="output folder (default: ./analysis)")


def command(args: argparse.Namespace) -> None:
    """Fit, then write the four tables and the two figures; print the selection and the detours."""
    for flag in ("max_states", "restarts"):
        if getattr(args, flag) < 1:
            raise HierGenError(f"--{flag} must be at least 1")
    check_seed("--seed", args.seed)
    s = Settings(args.metric, args.max_states, args.restarts, args.seed)
    check_folder_can_be_made(args.out, "--out")
    table, frames = read_runs(find_runs(args.runs), [PREFIX.rstrip("/"), s.metric])
    selection, states, transitions, detours = training_map(table, frames, s)
    for name, frame in {"selection": selection, "states": states, "transitions": transitions,
                        "detours": detours}.items():
        write_csv(frame, os.path.join(args.out, f"hmm_{name}.csv"))
    plot.save(plot.hmm_graph(transitions, detours, len(table)), os.path.join(args.out, "hmm_graph.png"))
    plot.save(plot.hmm_curves(state_curves(states, frames, s.metric)), os.path.join(args.out, "hmm_curves.png"))
    print(selection.to_string(index=False, float_format="%.1f", na_rep="-"))
    print(f"selected: {int(selection.loc[selection['selected'], 'n_states'].iloc[0])} states (lowest held-out BIC)")
    print(detours.to_string(index=False, float_format="%.3g", na_rep="-"))
    print("wrote hmm_selection.csv, hmm_states.csv, hmm_transitions.csv, hmm_detours.csv, hmm_graph.png, "
          f"hmm_curves.png to {args.out}")
