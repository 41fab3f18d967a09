"""Run dynamics from metrics.jsonl: what each run commits to, and each condition's regime.

Per run: end values, total variation, oscillations, commitment, stability, seen/unseen accuracy;
per condition: outcome shares, bimodality of the end values and the regime, with bootstrap 95%
intervals of the shares and of the mean end value; per pair of conditions: a Mann-Whitney U test
that their end values differ, with its rank-biserial correlation.

    python -m analysis dynamics RUN... [--metric test_aux] [--data_dir DIR] [--out DIR]

Series are read on the steps that every run of a condition logged.
"""
from __future__ import annotations

import argparse
import itertools
import warnings
from dataclasses import dataclass

import diptest
import numpy as np
import pandas as pd
from scipy.special import logit
from scipy.stats import mannwhitneyu
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

import plot
from analysis import seen
from analysis.arguments import add_conditions, add_runs, outputs
from analysis.outputs import Outputs
from analysis.runs import RULE_SHARES, RunDir, common_steps, find_runs, read_runs, rule_shares, trajectory_rows

MIN_SEEDS_BIMODALITY = 4  # the dip test is not defined for 3 values or fewer
OUTCOMES = ("hierarchical", "linear", "uncommitted")
RESAMPLES = 2000  # bootstrap resamples of a condition's runs
SIGNIFICANCE = 0.05  # the p below which the summary says two conditions differ (no correction for many pairs)


@dataclass(frozen=True)
class Settings:
    """The parameters of the definitions, with their defaults."""

    metric: str = "test_aux"
    end_evals: int = 5            # end value: mean of the last m evaluations
    late_fraction: float = 1 / 3  # late TV: over the last third of the steps
    high: float = 0.9             # oscillation hysteresis: state H once a >= high ...
    low: float = 0.1              # ... and L once a <= low
    commit: float = 0.95          # a rule's end share that commits a run to it
    stable_tv: float = 0.05       # stable: late TV per 10k steps at most this
    regime_share: float = 0.8     # share of a condition's seeds that sets its regime
    memorization_gap: float = 0.5  # |seen - unseen| end accuracy of a memorizing seed
    conditions: str = "flags"     # how conditions are named: by the flags that differ, or "prefix"


def end_value(values: np.ndarray, m: int = 5) -> float:
    """Mean of the last m evaluations (less noisy than the last point alone)."""
    return float(np.mean(values[-m:]))


def total_variation(steps: np.ndarray, values: np.ndarray, start: float = -np.inf, end: float = np.inf) -> float:
    """Sum of |a(t_{k+1}) - a(t_k)| over consecutive evaluations inside [start, end]."""
    inside = values[(steps >= start) & (steps <= end)]
    return float(np.abs(np.diff(inside)).sum())


def late_tv_per_10k(steps: np.ndarray, values: np.ndarray, fraction: float = 1 / 3) -> float:
    """Total variation over the last `fraction` of the steps, per 10,000 steps of that window."""
    span = (steps[-1] - steps[0]) * fraction
    if span <= 0:
        return float("nan")
    return total_variation(steps, values, start=steps[-1] - span) / (span / 10_000)


def oscillations(values: np.ndarray, high: float = 0.9, low: float = 0.1) -> int:
    """H<->L switches, the state being H once a >= high, L once a <= low, else unchanged."""
    states = np.where(values >= high, 1, np.where(values <= low, -1, 0))
    states = states[states != 0]
    return int(np.count_nonzero(states[1:] != states[:-1]))


def commitment(end_hierarchical: float, end_linear: float, threshold: float = 0.95) -> str | None:
    """hierarchical / linear when that rule's end share reaches the threshold, else uncommitted."""
    if np.isnan(end_hierarchical) or np.isnan(end_linear):
        return None
    if end_hierarchical >= threshold:
        return "hierarchical"
    return "linear" if end_linear >= threshold else "uncommitted"


def bimodality(end_values: np.ndarray) -> dict:
    """Hartigan's dip test, and 1- vs 2-component Gaussian mixtures on the logits compared by BIC."""
    if len(end_values) < MIN_SEEDS_BIMODALITY:
        return {"dip": np.nan, "dip_p": np.nan, "bic_1": np.nan, "bic_2": np.nan, "bimodal": pd.NA}
    dip, dip_p = diptest.diptest(np.asarray(end_values, float))
    x = logit(np.clip(end_values, 1e-3, 1 - 1e-3)).reshape(-1, 1)
    with warnings.catch_warnings():
        # Identical end values (every seed at 1.0) leave a second component nothing to fit.
        warnings.simplefilter("ignore", ConvergenceWarning)
        bic = [GaussianMixture(k, n_init=3, random_state=0).fit(x).bic(x) for k in (1, 2)]
    return {"dip": dip, "dip_p": dip_p, "bic_1": bic[0], "bic_2": bic[1], "bimodal": bool(bic[1] < bic[0])}


def regime(runs: pd.DataFrame, s: Settings = Settings()) -> str | None:
    """hierarchical / linear / memorization / unstable from a condition's rows of runs.csv.

    None where the runs lack what would decide it (rule shares, or the seen/unseen split).
    """
    stable = runs["stable"].fillna(False).to_numpy(bool)
    if stable.mean() < s.regime_share:
        return "unstable"
    if runs["commitment"].isna().any():
        return None
    for rule in ("hierarchical", "linear"):
        if (stable & (runs["commitment"] == rule).to_numpy()).mean() >= s.regime_share:
            return rule
    gap = (runs["end_seen_acc"] - runs["end_unseen_acc"]).abs()
    if gap.isna().any():
        return None
    memorizing = stable & (gap >= s.memorization_gap).to_numpy()
    return "memorization" if memorizing.mean() >= s.regime_share else "unstable"


def run_row(frame: pd.DataFrame, types: pd.DataFrame | None, s: Settings) -> dict:
    """The runs.csv values of one run from its metrics on its condition's common steps."""
    steps, values = frame.index.to_numpy(float), frame[s.metric].to_numpy(float)
    shares = rule_shares(frame)
    end_h, end_l = (end_value(frame[c].to_numpy(float), s.end_evals) for c in shares) if shares else (np.nan, np.nan)
    late_tv = late_tv_per_10k(steps, values, s.late_fraction)
    row = {"last_step": int(steps[-1]), f"end_{s.metric}": end_value(values, s.end_evals),
           "end_hierarchical": end_h, "end_linear": end_l, "tv_full": total_variation(steps, values),
           "tv_late_per_10k": late_tv, "oscillations": oscillations(values, s.high, s.low),
           "commitment": commitment(end_h, end_l, s.commit),
           "stable": pd.NA if np.isnan(late_tv) else bool(late_tv <= s.stable_tv),
           "end_seen_acc": np.nan, "end_unseen_acc": np.nan}
    if types is not None:
        acc = seen.seen_accuracy(frame, types)
        row["end_seen_acc"] = end_value(acc["seen_acc"].to_numpy(), s.end_evals)
        row["end_unseen_acc"] = end_value(acc["unseen_acc"].to_numpy(), s.end_evals)
    return row


def runs_frame(table: pd.DataFrame, frames: dict[str, pd.DataFrame], args: dict[str, dict],
               s: Settings = Settings(), data_dir: str | None = None) -> pd.DataFrame:
    """runs.csv from the run table and each run's series on its condition's common steps."""
    rows = [run_row(frames[name], seen.type_table(args[name], data_dir), s) for name in table["run"]]
    out = pd.concat([table, pd.DataFrame(rows)], axis=1)
    out["stable"] = out["stable"].astype("boolean")
    return out


def bootstrap_intervals(commitments: pd.Series, end_values: np.ndarray, metric_end: str,
                        resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """95% percentile intervals of the outcome shares and of the mean end value, from `resamples`
    resamples of the condition's runs (fixed seed: the same runs give the same intervals)."""
    rng = np.random.default_rng(seed)
    nan = (np.nan, np.nan)
    picked = commitments.to_numpy(object)[rng.integers(0, len(commitments), (resamples, len(commitments)))]
    known = commitments.notna().all()
    out = {}
    for rule in OUTCOMES:
        shares = (picked == rule).mean(axis=1)
        out[f"p_{rule}_lo"], out[f"p_{rule}_hi"] = np.percentile(shares, [2.5, 97.5]) if known else nan
    values = end_values[~np.isnan(end_values)]
    interval = nan
    if len(values):
        means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
        interval = np.percentile(means, [2.5, 97.5])
    out[f"mean_{metric_end}_lo"], out[f"mean_{metric_end}_hi"] = interval
    return out


def conditions_frame(runs: pd.DataFrame, s: Settings = Settings()) -> pd.DataFrame:
    """conditions.csv: per condition, outcome shares, bimodality of the end values and the regime,
    then the bootstrap intervals (last, so that the earlier columns keep their places)."""
    end = f"end_{s.metric}"
    rows = []
    for condition, group in runs.groupby("condition", observed=True):
        known = group["commitment"].notna().all()
        share = {rule: (group["commitment"] == rule).mean() if known else np.nan for rule in OUTCOMES}
        values = group[end].to_numpy(float)
        rows.append({"condition": condition, "n_runs": len(group),
                     **{f"p_{rule}": p for rule, p in share.items()},
                     f"mean_{end}": group[end].mean(),
                     "mean_end_hierarchical_runs": group.loc[group["commitment"] == "hierarchical", end].mean(),
                     **bimodality(values), "regime": regime(group, s),
                     **bootstrap_intervals(group["commitment"], values, end)})
    out = pd.DataFrame(rows)
    out["bimodal"] = out["bimodal"].astype("boolean")
    return out


def comparisons_frame(runs: pd.DataFrame, s: Settings = Settings()) -> pd.DataFrame:
    """comparisons.csv: for each pair of conditions, a two-sided Mann-Whitney U test of their end
    values and its rank-biserial correlation r = 2U/(n_a n_b) - 1 (U is condition_a's; r > 0 where
    condition_a's end values tend to be the higher, +-1 where every run of one is above the other's)."""
    end = f"end_{s.metric}"
    groups = {c: g[end].dropna().to_numpy(float) for c, g in runs.groupby("condition", observed=True)}
    rows = []
    for (a, x), (b, y) in itertools.combinations(groups.items(), 2):
        if len(x) == 0 or len(y) == 0:
            continue
        u, p = mannwhitneyu(x, y, alternative="two-sided")
        rows.append({"condition_a": a, "condition_b": b, "n_a": len(x), "n_b": len(y),
                     f"median_{end}_a": np.median(x), f"median_{end}_b": np.median(y),
                     "U": u, "p": p, "rank_biserial": 2 * u / (len(x) * len(y)) - 1})
    columns = ["condition_a", "condition_b", "n_a", "n_b", f"median_{end}_a", f"median_{end}_b", "U", "p",
               "rank_biserial"]
    return pd.DataFrame(rows, columns=columns)


def comparison_sentence(row: pd.Series, metric: str = Settings.metric) -> str:
    """One comparison in words: "A differs from B, p = ..." below SIGNIFICANCE, else that it does not."""
    verb = "differs from" if row["p"] < SIGNIFICANCE else "does not detectably differ from"
    return (f"{row['condition_a']} {verb} {row['condition_b']}, p = {row['p']:.2g} (Mann-Whitney U = {row['U']:g}, "
            f"rank-biserial r = {row['rank_biserial']:+.2f}; median end {metric} {row[f'median_end_{metric}_a']:.2f} "
            f"vs {row[f'median_end_{metric}_b']:.2f}, n = {row['n_a']} vs {row['n_b']})")


def logged_names(s: Settings = Settings()) -> list[str]:
    """What the analysis reads of each run: the metric, the rule shares, the per-type accuracies."""
    return [s.metric, *(c for pair in RULE_SHARES for c in pair), seen.TYPE_PREFIX]


def dynamics(runs: list[RunDir], s: Settings = Settings(),
             data_dir: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """runs.csv, conditions.csv and the metric's trajectories (for plot.trajectories) as DataFrames;
    comparisons_frame(runs.csv) compares the conditions."""
    table, frames = read_runs(runs, logged_names(s), by=s.conditions)
    frames = common_steps(frames, table, s.metric)
    per_run = runs_frame(table, frames, {run.name: run.args for run in runs}, s, data_dir)
    return per_run, conditions_frame(per_run, s), trajectory_rows(table, frames, s.metric)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runs(parser)
    parser.add_argument("--metric", default=Settings.metric,
                        help="the generalization metric a(t) (default: test_aux)")
    add_conditions(parser)
    parser.add_argument("--data_dir", default=None,
                        help="where the runs' data folders are (default: as each args.json says, "
                             "relative to the current directory)")


def command(args: argparse.Namespace) -> None:
    write_dynamics(find_runs(args.runs), Settings(metric=args.metric, conditions=args.conditions), args.data_dir,
                   outputs(args))


def write_dynamics(runs: list[RunDir], s: Settings, data_dir: str | None,
                   out: Outputs) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Compute everything, print a summary, then write runs.csv, conditions.csv, comparisons.csv and
    the two figures; returns the three tables."""
    per_run, per_condition, curves = dynamics(runs, s, data_dir)
    summary = per_condition[["condition", "n_runs", "p_hierarchical", "p_linear", "p_uncommitted",
                             f"mean_end_{s.metric}", "bimodal", "regime"]]
    summary = summary.astype({"bimodal": object}).fillna({"bimodal": "-"})
    print(summary.to_string(index=False, float_format="%.2f", na_rep="-"))
    compared = comparisons_frame(per_run, s)
    for _, row in compared.iterrows():
        print(comparison_sentence(row, s.metric))
    out.write({"runs": per_run, "conditions": per_condition, "comparisons": compared},
              {"trajectories": plot.trajectories(curves), "outcomes": plot.outcomes(per_run, s.metric, s.end_evals)})
    return per_run, per_condition, compared
