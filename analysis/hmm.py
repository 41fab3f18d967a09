"""Hidden Markov models of training dynamics: the latent states runs pass through, from their weight statistics.

    python -m analysis hmm RUN... [--metric test_aux] [--max_states 8] [--restarts 5] [--zscore global]
                                  [--seed 0] [--out DIR] [--format png|pdf|svg]

The 14 weight statistics a run logs at every evaluation (`weights/...`, models/weight_statistics.py)
are z-scored and read as the emissions of one Gaussian HMM (diagonal covariances) shared by all runs
(Hu, Chen, Saphra & Cho 2023, "Latent State Models of Training Dynamics"). `--zscore global` (the
default) takes one mean and SD per statistic over all runs' evaluations; `per_run`, Hu et al.'s, takes
each run's own, which puts one state at different places in runs that spend different shares of
training in it, and the HMM then needs extra states to cover them. ceil(20%) of the runs are held
out, as scikit-learn's train_test_split(test_size=0.2) counts them; models of 1..max_states states
are fitted on the others, as many counts as the fit runs' evaluations have parameters for, each from
`restarts` initialisations. Per count the restart with the best held-out likelihood is kept, and the
count whose kept model has the lowest held-out BIC is selected. Its Viterbi paths give every run's
state at every evaluation; states are numbered by when training visits them (state 0 the earliest on
average).

A restart is EM in hmmlearn's scaling implementation; one whose parameters or held-out likelihood are
not finite (EM can leave a state without evaluations and return NaN without raising) is refitted in
log space, and dropped if that fails too. A count whose every restart is dropped is marked failed.

    hmm_selection.csv    per state count (held-out log-likelihoods in nats per held-out evaluation;
                         AIC and BIC on the held-out runs):
                         n_states
                         heldout_loglik_mean, heldout_loglik_sd   over the restarts used (Hu et al.'s)
                         heldout_loglik_best                      of the best restart, the one kept
                         aic, bic                                 of the best restart: bic selects
                         aic_mean_restarts, bic_mean_restarts     averaged over the restarts used
                         restarts_used   restarts with finite fits (the others dropped)
                         failed          every restart dropped: the count is skipped, its values empty
                         selected        the count with the lowest bic
    hmm_states.csv       run, seed, step, state: every run's Viterbi path (fit and held-out runs alike)
    hmm_transitions.csv  from_state, to_state: the fitted probability and how often the paths make it
    hmm_detours.csv      per state: the runs visiting it; Pearson r and p of visiting it against the
                         convergence step (first step with the metric >= 0.9, else the last step);
                         obligatory (every run visits it), detour (an optional state whose visitors
                         converge significantly later: r > 0, p < 0.05)
    hmm_selection.png    held-out log-likelihood (mean and SD over restarts), AIC and BIC by state count
    hmm_graph.png        the states and the transitions the Viterbi paths make
    hmm_curves.png       the metric and each statistic over training, every evaluation coloured by state

Only the evaluations that logged all 14 statistics and the metric, as finite numbers, are read.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
from hmmlearn.base import ConvergenceMonitor
from hmmlearn.hmm import GaussianHMM
from scipy.stats import pearsonr
from threadpoolctl import threadpool_limits

import plot
from analysis.arguments import add_count, add_runs, add_seed, outputs
from analysis.runs import find_runs, read_runs
from models.weight_statistics import NAMES, PREFIX
from util import HierGenError

CONVERGED = 0.9      # a run has converged at its first evaluation with the metric at least this
HELDOUT_SHARE = 0.2  # of the runs, held out to choose the number of states
MIN_RUNS = 5         # the fewest runs of which 20% is a whole held-out run
N_ITER = 200         # EM iterations at most; bench/hmm.py counts how many a fit takes
# EM stops once an iteration gains less than this many nats per evaluation. hmmlearn's default, 0.01
# nats in all, asks 4e-6 per evaluation of 2,400 and keeps over-parameterised models crawling for up
# to 150 iterations: this one fits in markedly fewer (bench/hmm.py counts them), with the same count
# selected and the held-out BICs within a fraction of a percent.
TOL_PER_EVALUATION = 1e-4
SIGNIFICANCE = 0.05  # of a detour's correlation with slow convergence
ZSCORES = ("global", "per_run")
PARAMETERS = ("startprob_", "transmat_", "means_", "covars_")


@dataclass(frozen=True)
class Settings:
    """The parameters a researcher may change, with their defaults."""

    metric: str = "test_aux"
    max_states: int = 8
    restarts: int = 5
    seed: int = 0  # of the split into fit and held-out runs and of the restarts' initialisations
    zscore: str = "global"  # one of ZSCORES


def evaluations(frames: dict[str, pd.DataFrame], metric: str) -> dict[str, pd.DataFrame]:
    """Each run's evaluations that logged every weight statistic and the metric as finite numbers: those
    columns, by step (a statistic of an all-zero matrix is NaN; JSON may carry an Infinity)."""
    out = {}
    for name, frame in frames.items():
        missing = [n for n in NAMES if n not in frame or frame[n].isna().all()]
        if missing:
            what = f"the weight statistics ({PREFIX}...)" if len(missing) == len(NAMES) else ", ".join(missing)
            raise HierGenError(f"run {name} never logged {what}: training logs them at each evaluation "
                               "unless run with --no_weight_stats")
        if metric not in frame or frame[metric].isna().all():
            raise HierGenError(f"metric {metric} was never logged by run {name}")
        rows = frame[[*NAMES, metric]]
        rows = rows[np.isfinite(rows.to_numpy(float)).all(axis=1)]
        if rows.empty:
            raise HierGenError(f"run {name} never logged {metric} at an evaluation with the weight statistics")
        out[name] = rows
    return out


def zscore(x: np.ndarray) -> np.ndarray:
    """Each column to mean 0 and variance 1; a constant column to 0 (tested exactly: rounding gives a
    constant column a tiny nonzero spread that would blow up)."""
    constant = (x == x[0]).all(0)
    sd = np.where(constant, 1.0, x.std(0))
    return np.where(constant, 0.0, (x - x.mean(0)) / sd)


def standardise(runs: list[np.ndarray], how: str) -> list[np.ndarray]:
    """The runs' statistics z-scored over all runs' evaluations together (global) or within each run (per_run)."""
    if how == "per_run":
        return [zscore(x) for x in runs]
    return np.split(zscore(np.concatenate(runs)), np.cumsum([len(x) for x in runs])[:-1])


def split(names: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Fit and held-out runs: ceil(20%) of the runs, drawn from `seed`, held out; each list in the given order."""
    if len(names) < MIN_RUNS:
        raise HierGenError(f"hmm needs at least {MIN_RUNS} runs, to fit the states on 80% of them and choose "
                           f"their number on the other 20% (one run at least); got {len(names)}")
    n_heldout = math.ceil(len(names) * HELDOUT_SHARE)
    heldout = set(np.random.default_rng(seed).permutation(len(names))[:n_heldout])
    return ([n for i, n in enumerate(names) if i not in heldout], [n for i, n in enumerate(names) if i in heldout])


def n_parameters(n_states: int, n_features: int) -> int:
    """Free parameters of a diagonal Gaussian HMM: start and transition probabilities, means, variances."""
    return n_states - 1 + n_states * (n_states - 1) + 2 * n_states * n_features


def most_states(n_evaluations: int, max_states: int, n_features: int = len(NAMES)) -> int:
    """The largest count up to max_states whose model has no more parameters than there are evaluations (0 if none)."""
    return max([k for k in range(1, max_states + 1) if n_parameters(k, n_features) <= n_evaluations], default=0)


class StopsAtNaN(ConvergenceMonitor):
    """hmmlearn's convergence test, and a stop at a log-likelihood that is not finite: the parameters
    are NaN by then, and EM would run out its N_ITER iterations on them."""

    @property
    def converged(self) -> bool:
        return super().converged or not np.isfinite(self.history[-1])


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """One thread, and hmmlearn's log lines (a log-likelihood that dips by rounding, a state left
    without evaluations) and scikit-learn's k-means warnings (fewer distinct points than states) silenced.

    The k-means that initialises a fit is small: its OpenMP threads gain nothing, and while another
    process holds a core they spin-wait and slow the whole fit down by an order of magnitude.
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
            implementation: str = "scaling") -> GaussianHMM | None:
    """One EM fit in `implementation`, left to score and decode in log space; None where it fails.

    The scaling implementation is several times faster than log space and gives the same fit (tested).
    It raises where an evaluation no state explains underflows it; and EM, in either, can empty a
    state and return NaN parameters without raising: both are failures here.
    """
    model = GaussianHMM(n_states, covariance_type="diag", n_iter=N_ITER, tol=TOL_PER_EVALUATION * len(x),
                        random_state=random_state, implementation=implementation)
    model.monitor_ = StopsAtNaN(model.tol, model.n_iter, verbose=False)
    try:
        model.fit(x, lengths)
    except ValueError:  # "forward pass failed with underflow", or NaN parameters that fail hmmlearn's checks
        return None
    if not all(np.isfinite(getattr(model, name)).all() for name in PARAMETERS):
        return None
    model.implementation = "log"  # a held-out run may hold what the fit runs did not
    return model


def fit_restart(fit: list[np.ndarray], heldout: list[np.ndarray], n_states: int, random_state: int
                ) -> tuple[GaussianHMM, np.ndarray] | None:
    """One restart: the model and its log-likelihood of each held-out run, fitted in the scaling
    implementation, else in log space where that fails or scores a held-out run as not finite; None
    where both fail."""
    x, lengths = np.concatenate(fit), [len(f) for f in fit]
    for implementation in ("scaling", "log"):
        model = fit_hmm(x, lengths, n_states, random_state, implementation)
        if model is not None:
            scores = np.array([model.score(h) for h in heldout])
            if np.isfinite(scores).all():
                return model, scores
    return None


def select(fit: list[np.ndarray], heldout: list[np.ndarray], s: Settings) -> tuple[pd.DataFrame, GaussianHMM]:
    """hmm_selection.csv over 1..most_states states, and the model of the count with the lowest held-out BIC."""
    n_heldout = sum(len(h) for h in heldout)
    top = most_states(sum(len(f) for f in fit), s.max_states, fit[0].shape[1])
    random_states = np.random.SeedSequence(s.seed).generate_state(s.restarts)
    rows, models = [], {}
    for n_states in range(1, top + 1):
        n_params = n_parameters(n_states, fit[0].shape[1])
        with quiet():
            fitted = [fit_restart(fit, heldout, n_states, int(r)) for r in random_states]
        fitted = [f for f in fitted if f is not None]
        row = {"n_states": n_states, "restarts_used": len(fitted), "failed": not fitted}
        if fitted:
            loglik = np.array([scores.sum() for _, scores in fitted])
            aic, bic = -2 * loglik + 2 * n_params, -2 * loglik + n_params * math.log(n_heldout)
            best = int(np.argmax(loglik))
            models[n_states] = fitted[best][0]
            per_evaluation = pd.Series(loglik / n_heldout)
            row.update(heldout_loglik_mean=per_evaluation.mean(), heldout_loglik_sd=per_evaluation.std(),
                       heldout_loglik_best=per_evaluation[best], aic=aic[best], bic=bic[best],
                       aic_mean_restarts=aic.mean(), bic_mean_restarts=bic.mean())
        rows.append(row)
    columns = ["n_states", "heldout_loglik_mean", "heldout_loglik_sd", "heldout_loglik_best", "aic", "bic",
               "aic_mean_restarts", "bic_mean_restarts", "restarts_used", "failed"]
    table = pd.DataFrame(rows).reindex(columns=columns)
    if table["failed"].all():
        raise HierGenError(f"no state count could be fitted: EM gave non-finite parameters in all "
                           f"{s.restarts} restarts of each of 1..{top} states")
    chosen = int(table.loc[table["bic"].idxmin(), "n_states"])
    table["selected"] = table["n_states"] == chosen
    return table, models[chosen]


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
    series = dict(zip(names, standardise([rows[n][list(NAMES)].to_numpy(float) for n in names], s.zscore)))
    fit, heldout = split(names, s.seed)
    n_fit = sum(len(series[n]) for n in fit)
    if most_states(n_fit, s.max_states) < 2:
        raise HierGenError(f"too few evaluations to fit 2 states: the {len(fit)} fit runs hold {n_fit}, a model "
                           f"of 2 states has {n_parameters(2, len(NAMES))} parameters")
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
    add_runs(parser)
    parser.add_argument("--metric", default=Settings.metric,
                        help="the convergence metric: converged at its first value >= 0.9 (default: test_aux)")
    add_count(parser, "--max_states", Settings.max_states,
              "fit models of 1..max_states states, fewer where the data have too few evaluations for their parameters")
    add_count(parser, "--restarts", Settings.restarts, "initialisations per state count; the best on the held-out "
              "runs is kept")
    parser.add_argument("--zscore", choices=ZSCORES, default=Settings.zscore,
                        help="z-score each statistic over all runs' evaluations (global) or within each run "
                             "(per_run, as Hu et al.) (default: global)")
    add_seed(parser, Settings.seed, "seed of the held-out runs and of the initialisations")


def notes(selection: pd.DataFrame, s: Settings) -> list[str]:
    """Summary lines on what limited the selection: the data's cap, dropped restarts, failed counts,
    and a selected count that is the most fitted (the held-out BIC still falling)."""
    out = []
    top = int(selection["n_states"].max())
    if top < s.max_states:
        out.append(f"the data capped the state counts at {top} (--max_states {s.max_states}): a model of "
                   f"{top + 1} states has {n_parameters(top + 1, len(NAMES))} parameters, more than the fit "
                   "runs have evaluations")
    failed = selection["failed"]
    dropped = int((s.restarts - selection.loc[~failed, "restarts_used"]).sum())
    if dropped:
        out.append(f"{dropped} restarts dropped: EM gave non-finite parameters or held-out likelihoods in both "
                   "the scaling and the log-space implementation")
    if failed.any():
        out.append(f"failed, every restart dropped, and skipped: {selection.loc[failed, 'n_states'].tolist()} states")
    chosen = int(selection.loc[selection["selected"], "n_states"].iloc[0])
    if chosen == selection.loc[~failed, "n_states"].max():
        raise_it = "raise --max_states" if top == s.max_states else "more runs or evaluations would allow more"
        out.append(f"the held-out BIC still falls at {chosen} states, the most fitted: the cap decided the "
                   f"count, not the data ({raise_it})")
    return out


def command(args: argparse.Namespace) -> None:
    """Fit, then write the four tables and the three figures; print the selection, its notes and the detours."""
    s = Settings(args.metric, args.max_states, args.restarts, args.seed, args.zscore)
    out = outputs(args)
    table, frames = read_runs(find_runs(args.runs), [PREFIX.rstrip("/"), s.metric])
    selection, states, transitions, detours = training_map(table, frames, s)
    print(selection.to_string(index=False, float_format="%.2f", na_rep="-"))
    print(f"selected: {int(selection.loc[selection['selected'], 'n_states'].iloc[0])} states (lowest held-out BIC "
          "of the best restart)")
    for line in notes(selection, s):
        print(f"note: {line}")
    print(detours.to_string(index=False, float_format="%.3g", na_rep="-"))
    out.write({"hmm_selection": selection, "hmm_states": states, "hmm_transitions": transitions,
               "hmm_detours": detours},
              {"hmm_selection": plot.hmm_selection(selection), "hmm_graph": plot.hmm_graph(transitions, detours,
                                                                                          len(table)),
               "hmm_curves": plot.hmm_curves(state_curves(states, frames, s.metric), s.zscore)})
