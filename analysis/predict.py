"""How early a run's outcome is told: its commitment and end value predicted from what it logged up to each cut-off.

    python -m analysis predict RUN... [--metric test_aux] [--features history,shares,weights,hmm,all]
                                      [--map DIR] [--folds 5] [--permutations 1] [--seed 0] [--out DIR]

A run's outcome is what `dynamics` says of it: its commitment (hierarchical / linear / uncommitted,
from the end shares of the two rules) and the end value of the metric, both on its condition's
common steps. At each cut-off (1%, 2%, 5%, 10%, 20%, ..., 90% of the last step all runs logged) the
outcome is predicted from the evaluations up to the cut-off only, by feature set:

    majority  no features: the models learn the class shares and the mean end value (baseline)
    current   the metric's value at the cut-off (baseline: what a researcher reads off a curve)
    history   the metric's last value, maximum, mean and total variation so far, and its slope
              over the last 10% of training
    shares    the rule shares' last values
    weights   the 14 weight statistics' last values and slopes over the last 10% of training
    hmm       the training map's state at the last evaluation up to the cut-off, one-hot (--map:
              a folder `python -m analysis hmm` wrote)
    all       every set above that is given, together

A multinomial logistic regression (L2, C = 0.1, standardised features) predicts the commitment, a
ridge regression (alpha = 10, standardised features) the end value: scikit-learn's models, ten
times more regularised than its defaults, as a sweep has few runs per feature and the stopping rule
reads the classifier's probabilities. Both are cross-validated over runs (`cv` runs: --folds folds,
stratified by outcome), and with several conditions also leaving one condition out (`cv`
conditions: trained on the other conditions' runs). The same folds are refitted on outcomes
shuffled across runs (--permutations times): the score a model gets where the features say
nothing. Every score is taken over the held-out predictions of all runs together.

    predict.csv  per cut-off, cv scheme and feature set:
        cutoff, step            the fraction of training, and the last evaluation step it reads
        features                the feature set
        balanced_accuracy       of the commitment (the mean recall over the outcome classes)
        auc                     of the commitment where there are two classes (else empty)
        r2                      of the end value
        n_runs                  runs predicted
        permuted_balanced_accuracy, permuted_r2   the same with shuffled outcomes (mean over permutations)
        cv                      runs (k-fold over runs) or conditions (leave one condition out)
        stopped_runs, saved_share, wrong_outcomes
            the stopping rule from this cut-off on: a run stops at the first cut-off from here on
            where the classifier gives its predicted outcome a probability >= 0.95; the runs it
            stops, the share of the runs' steps (from the stop to each run's last step) it saves,
            and the stopped runs whose predicted outcome is not their commitment
    predict.png  balanced accuracy and R^2 against the cut-off, one line per feature set

When every run ends with the same commitment (or the runs logged no rule shares) there is no class to
tell apart: the classification columns are left empty and the end value alone is predicted.

The hmm feature is an optimistic bound: the map's states are Viterbi paths decoded from whole runs,
so a state at a cut-off has seen the evaluations after it.
"""
from __future__ import annotations

import argparse
import functools
import os
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, LeaveOneGroupOut, StratifiedKFold
from threadpoolctl import threadpool_limits

import plot
from analysis import dynamics
from analysis.arguments import add_count, add_runs, add_seed, outputs
from analysis.runs import RULE_SHARES, common_steps, find_runs, read_runs, rule_shares
from models.weight_statistics import NAMES, PREFIX
from util import HierGenError

CUTOFFS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BASELINES = ("majority", "current")
FEATURE_SETS = ("history", "shares", "weights", "hmm", "all")
MAP_FILE = "hmm_states.csv"
MAX_ITER = 100   # Newton iterations of a logistic regression, at most
TOL = 1e-8       # ... which stops once no entry of its gradient exceeds this
ABSENT = -1e9    # the logit of a class that a fold's training runs lack
FLAT = 1e-8      # curvature added along the intercepts' flat direction
UNAVAILABLE = {"shares": "the runs logged no rule shares",
               "weights": f"not every run logged the 14 weight statistics ({PREFIX}...) at every evaluation "
                          "(trained with --no_weight_stats?)",
               "hmm": "it needs a training map (--map DIR)"}


@dataclass(frozen=True)
class Settings:
    """The parameters, with their defaults."""

    metric: str = "test_aux"
    folds: int = 5
    permutations: int = 1
    seed: int = 0               # of the folds and the permutations
    told: float = 0.9           # balanced accuracy (commitment), R^2 (end value) from which it counts as told
    confident: float = 0.95     # stopping rule: probability of the predicted outcome
    slope_window: float = 0.1   # slopes over this share of training before the cut-off
    C: float = 0.1              # inverse strength of the logistic regression's L2 penalty
    alpha: float = 10.0         # strength of the ridge regression's


# ---- outcomes and series ----

def outcomes(table: pd.DataFrame, aligned: dict[str, pd.DataFrame], s: Settings) -> pd.DataFrame:
    """Each run's commitment, end value and last step, as dynamics computes them from the runs' series
    on their condition's common steps (analysis.runs.common_steps), in the order of `table`."""
    definitions = dynamics.Settings(metric=s.metric)
    rows = [dynamics.run_row(aligned[name], None, definitions) for name in table["run"]]
    return pd.DataFrame(rows)[["commitment", f"end_{s.metric}", "last_step"]].set_axis(
        ["commitment", "end", "last_step"], axis=1)


def series(table: pd.DataFrame, aligned: dict[str, pd.DataFrame], metric: str
           ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The steps at which every run logged the metric; the runs' values there (run x step x column) of
    the metric, the rule shares and the weight statistics that every run logged at all of them; those
    columns' names."""
    steps = functools.reduce(pd.Index.intersection, (aligned[name].index for name in table["run"]))
    if len(steps) < 2 or steps[-1] <= 0:
        raise HierGenError(f"the runs share fewer than two evaluations of {metric}: there is nothing to cut off")
    candidates = list(dict.fromkeys([metric, *(c for pair in RULE_SHARES for c in pair), *NAMES]))
    values = np.stack([aligned[name].reindex(index=steps, columns=candidates).to_numpy(float)
                       for name in table["run"]])
    logged = np.isfinite(values).all((0, 1))
    return steps.to_numpy(float), values[:, :, logged], [c for c, ok in zip(candidates, logged) if ok]


def cut_points(steps: np.ndarray) -> list[tuple[float, int]]:
    """(fraction, index of the last evaluation at or before that fraction of the last step); cut-offs
    before the first evaluation are left out."""
    points = [(f, int(np.searchsorted(steps, f * steps[-1], side="right")) - 1) for f in CUTOFFS]
    return [(f, k) for f, k in points if k >= 0]


# ---- features: the evaluations up to the cut-off only ----

def slopes(steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares slope per 1,000 steps of each run's columns over these evaluations (0 for one)."""
    t = steps - steps.mean()
    spread = (t ** 2).sum()
    if spread == 0:
        return np.zeros((values.shape[0], values.shape[2]))
    return np.einsum("k,rkc->rc", t, values - values.mean(1, keepdims=True)) / spread * 1000


def available(columns: list[str], mapped: bool) -> list[str]:
    """The feature sets (beside the baselines) that these logged columns and a map allow."""
    sets = ["history"]
    if rule_shares(pd.DataFrame(columns=columns)):
        sets.append("shares")
    if set(NAMES) <= set(columns):
        sets.append("weights")
    if mapped:
        sets.append("hmm")
    return sets + ["all"]


def feature_sets(steps: np.ndarray, values: np.ndarray, columns: list[str], upto: int, s: Settings,
                 states: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every feature set the columns allow, from the evaluations 0..upto alone (and the map's states there)."""
    past = values[:, :upto + 1]
    since = int(np.searchsorted(steps, steps[upto] - s.slope_window * steps[-1], side="left"))
    trend = slopes(steps[since:upto + 1], values[:, since:upto + 1])
    m = columns.index(s.metric)
    a = past[:, :, m]
    # majority: a constant column, so that the models learn their intercepts alone (the class shares, the mean)
    sets = {"majority": np.zeros((len(values), 1)), "current": a[:, -1:],
            "history": np.column_stack([a[:, -1], a.max(1), a.mean(1), np.abs(np.diff(a, axis=1)).sum(1), trend[:, m]])}
    pair = rule_shares(pd.DataFrame(columns=columns))
    if pair:
        sets["shares"] = past[:, -1, [columns.index(c) for c in pair]]
    if set(NAMES) <= set(columns):
        weights = [columns.index(c) for c in NAMES]
        sets["weights"] = np.hstack([past[:, -1, weights], trend[:, weights]])
    if states is not None:
        sets["hmm"] = states
    sets["all"] = np.hstack([x for name, x in sets.items() if name not in BASELINES])
    return sets


def map_states(states: pd.DataFrame, runs: list[str], step: float, n_states: int) -> np.ndarray:
    """One-hot state of each run at its last mapped step at or before `step` (all zeros before its first)."""
    last = states[states["step"] <= step].groupby("run")["state"].last().reindex(runs)
    return np.eye(n_states + 1)[last.fillna(n_states).to_numpy(int), :n_states]


# ---- cross-validated predictions ----
#
# A cut-off's fits (every fold, the outcomes and their shufflings) are small and many: they are solved
# as one batch, the folds as masks over the runs, rather than one scikit-learn estimator at a time,
# whose per-fit overhead made the command several times slower on a large sweep (bench/predict.py).
# Tests check them against scikit-learn's LogisticRegression and Ridge.

def schemes(y: np.ndarray | None, conditions: np.ndarray, s: Settings) -> dict[str, np.ndarray]:
    """The held-out runs of each fold (fold x run, each run held out once) of each cross-validation:
    over runs (stratified by outcome where there is one), and leaving one condition out where there
    are several."""
    n = len(conditions)
    splitter = (StratifiedKFold if y is not None else KFold)(s.folds, shuffle=True, random_state=s.seed)
    splits = {"runs": splitter.split(np.zeros(n), y)}
    if len(np.unique(conditions)) > 1:
        splits["conditions"] = LeaveOneGroupOut().split(np.zeros(n), groups=conditions)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an outcome rarer than the folds: some folds lack it, as they must
        for scheme, split in splits.items():
            out[scheme] = np.stack([np.isin(np.arange(n), test) for _, test in split])
    return out


def standardised(x: np.ndarray, held_out: np.ndarray) -> np.ndarray:
    """fold x run x feature: the features scaled to mean 0 and variance 1 over each fold's training runs
    (a feature constant there is only centred)."""
    train = ~held_out[:, :, None]
    n = train.sum(1, keepdims=True)
    mean = (x * train).sum(1, keepdims=True) / n
    sd = np.sqrt((((x - mean) * train) ** 2).sum(1, keepdims=True) / n)
    return (x - mean) / np.where(sd > 0, sd, 1.0)


def ridge(x: np.ndarray, held_out: np.ndarray, targets: np.ndarray, alpha: float) -> np.ndarray:
    """Held-out predictions (target x run) of ridge regressions on standardised features: each fold's
    solution of min |y - b - Z w|^2 + alpha |w|^2 over its training runs, for every target at once."""
    z, train = standardised(x, held_out), (~held_out).astype(float)
    mean = train @ targets.T / train.sum(1, keepdims=True)                        # fold x target
    zt = z.transpose(0, 2, 1) * train[:, None, :]
    gram = zt @ z + alpha * np.eye(z.shape[2])
    w = np.linalg.solve(gram, zt @ (targets.T[None] - mean[:, None, :]))          # fold x feature x target
    predicted = z @ w + mean[:, None, :]                                          # fold x run x target
    return np.einsum("fr,frt->tr", held_out.astype(float), predicted)


def softmax_regression(x: np.ndarray, held_out: np.ndarray, labels: np.ndarray, n_classes: int, C: float,
                       start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Held-out class probabilities (label set x run x class) of multinomial logistic regressions on
    standardised features, one per fold and label set: each minimises its training runs' mean
    cross-entropy + |W|^2 / (2 C n_train) (intercepts free), as scikit-learn's LogisticRegression,
    over the classes its training runs hold (one class alone: it is predicted surely). Also the
    fitted parameters, from which the fits of the next cut-off start (`start`): they are near.

    Newton's method with a backtracking line search, each fit stopped on its own once converged, so
    that a fit depends on its own fold's runs alone."""
    z, train = standardised(x, held_out), ~held_out
    n_folds, n_runs, d = z.shape
    n_sets = len(labels)
    # one problem per fold and label set (fold-major); a column of ones carries the intercepts
    z1 = np.repeat(np.concatenate([z, np.ones((n_folds, n_runs, 1))], 2), n_sets, axis=0)
    weight = np.repeat(train / train.sum(1, keepdims=True), n_sets, axis=0)      # 1 / n_train on training runs
    target = np.tile(np.eye(n_classes)[labels], (n_folds, 1, 1)) * weight[..., None]
    # a class no training run holds gets a logit of minus infinity, or as good as: probability 0
    offset = np.where(target.sum(1, keepdims=True) > 0, 0.0, ABSENT)
    penalty = np.concatenate([np.ones(d), [0.0]])[None, :, None] / (C * (weight > 0).sum(1))[:, None, None]
    size = (d + 1) * n_classes
    # the softmax is flat along equal shifts of all intercepts: a tiny curvature there keeps each
    # Newton system solvable and leaves the step along it (its gradient is zero) at zero
    flat = np.zeros(size)
    flat[d * n_classes:] = FLAT

    def evaluate(theta, pick):
        zs = z1[pick] @ theta + offset[pick]
        zs = zs - zs.max(2, keepdims=True)
        e = np.exp(zs)
        total = e.sum(2, keepdims=True)
        loss = (weight[pick] * np.log(total[..., 0])).sum(1) - (zs * target[pick]).sum((1, 2))
        return loss + 0.5 * (penalty[pick] * theta ** 2).sum((1, 2)), e / total

    theta = np.zeros((n_folds * n_sets, d + 1, n_classes)) if start is None else start.copy()
    active = np.arange(len(theta))
    for _ in range(MAX_ITER):
        loss, proba = evaluate(theta[active], active)
        residual = weight[active][..., None] * proba - target[active]
        gradient = z1[active].transpose(0, 2, 1) @ residual + penalty[active] * theta[active]
        converged = np.abs(gradient).max((1, 2)) < TOL
        active, loss, proba, gradient = active[~converged], loss[~converged], proba[~converged], gradient[~converged]
        if not len(active):
            break
        step = -np.linalg.solve(hessian(z1[active], weight[active], proba, penalty[active], flat),
                                gradient.reshape(len(active), size, 1)).reshape(gradient.shape)
        t = line_search(lambda t: evaluate(theta[active] + t[:, None, None] * step, active)[0], loss,
                        (gradient * step).sum((1, 2)))
        theta[active] += t[:, None, None] * step
        active = active[t > 0]  # no step lowers the loss: as near the optimum as rounding allows
    zs = z1 @ theta + offset
    e = np.exp(zs - zs.max(2, keepdims=True))
    proba = (e / e.sum(2, keepdims=True)).reshape(n_folds, n_sets, n_runs, n_classes)
    return np.einsum("fr,flrc->lrc", held_out.astype(float), proba), theta


def hessian(z1: np.ndarray, weight: np.ndarray, proba: np.ndarray, penalty: np.ndarray, flat: np.ndarray
            ) -> np.ndarray:
    """problem x (feature, class) x (feature, class): the Hessian of the mean cross-entropy, whose block
    of classes (a, b) is sum_i w_i (p_ia [a = b] - p_ia p_ib) z_i z_i^T, plus the penalty's and the
    flat direction's curvature."""
    n, _, features = z1.shape
    k = proba.shape[2]
    h = np.empty((n, features, k, features, k))
    for a in range(k):
        for b in range(a, k):
            curvature = weight * proba[:, :, a] * ((a == b) - proba[:, :, b])
            h[:, :, a, :, b] = h[:, :, b, :, a] = (z1 * curvature[..., None]).transpose(0, 2, 1) @ z1
    h = h.reshape(n, features * k, features * k)
    h[:, np.arange(features * k), np.arange(features * k)] += penalty.repeat(k, 2).reshape(n, -1) + flat
    return h


def line_search(loss_at, loss: np.ndarray, slope: np.ndarray, halvings: int = 40) -> np.ndarray:
    """Per problem, the first of the step lengths 1, 1/2, 1/4, ... that lowers the loss enough (Armijo)."""
    t = np.ones(len(loss))
    searching = np.ones(len(loss), bool)
    for _ in range(halvings):
        enough = loss_at(t) <= loss + 1e-4 * t * slope
        searching &= ~enough
        if not searching.any():
            break
        t = np.where(searching, t / 2, t)
    return np.where(searching, 0.0, t)


def r2(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """R^2 of each row (target) of the predictions, as scikit-learn's r2_score; NaN where the truth is
    one value (its variance then is rounding, and any ratio to it noise)."""
    spread = ((truth - truth.mean(-1, keepdims=True)) ** 2).sum(-1)
    varies = np.ptp(truth, axis=-1) > 0
    return np.where(varies, 1 - ((truth - predicted) ** 2).sum(-1) / np.where(varies, spread, 1.0), np.nan)


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced accuracy of each row (label set): the mean recall over the classes it holds, as
    scikit-learn's balanced_accuracy_score."""
    recalls = [((predicted == c) & (truth == c)).sum(-1) / (truth == c).sum(-1) for c in range(n_classes)]
    return np.nanmean(recalls, axis=0)


def score(x: np.ndarray, y: np.ndarray | None, end: np.ndarray, held_out: np.ndarray,
          permutations: list[np.ndarray], n_classes: int, s: Settings, start: np.ndarray | None = None
          ) -> tuple[dict, np.ndarray | None, np.ndarray | None]:
    """One row's scores, the held-out class probabilities of the runs and the classifiers' parameters
    (None without classes); `start`: the parameters of the previous cut-off's classifiers. The
    outcomes come first, then their shufflings."""
    ends = np.stack([end] + [end[p] for p in permutations])
    fit = r2(ends, ridge(x, held_out, ends, s.alpha))
    row = {"r2": fit[0], "permuted_r2": fit[1:].mean()}
    if y is None:
        return row, None, None
    labels = np.stack([y] + [y[p] for p in permutations])
    proba, theta = softmax_regression(x, held_out, labels, n_classes, s.C, start)
    accuracy = balanced_accuracy(labels, proba.argmax(2), n_classes)
    row.update(balanced_accuracy=accuracy[0], permuted_balanced_accuracy=accuracy[1:].mean(),
               auc=roc_auc_score(y, proba[0][:, 1]) if n_classes == 2 else np.nan)
    return row, proba[0], theta


def stopping(proba: np.ndarray, y: np.ndarray, steps: np.ndarray, last_steps: np.ndarray, confident: float
             ) -> pd.DataFrame:
    """Per starting cut-off (proba: cut-off x run x class, `steps` the cut-offs' steps): the runs the rule
    stops at their first confident cut-off from there on, the share of the runs' steps it saves, and
    the stopped runs whose predicted outcome is wrong."""
    sure, predicted = proba.max(2) >= confident, proba.argmax(2)
    runs = np.arange(proba.shape[1])
    rows = []
    for start in range(len(proba)):
        stops = sure[start:].any(0)
        first = start + sure[start:].argmax(0)
        saved = np.where(stops, last_steps - steps[first], 0.0)
        rows.append({"stopped_runs": int(stops.sum()), "saved_share": saved.sum() / last_steps.sum(),
                     "wrong_outcomes": int((stops & (predicted[first, runs] != y)).sum())})
    return pd.DataFrame(rows)


# ---- the whole table ----

COLUMNS = ["cutoff", "step", "features", "balanced_accuracy", "auc", "r2", "n_runs", "permuted_balanced_accuracy",
           "cv", "permuted_r2", "stopped_runs", "saved_share", "wrong_outcomes"]


def classes(labels: pd.DataFrame) -> tuple[np.ndarray | None, list[str], str | None]:
    """The commitments as class indices, the class names, and why there is nothing to tell (or None)."""
    commitment = labels["commitment"]
    if commitment.isna().any():
        pairs = " or ".join("/".join(pair) for pair in RULE_SHARES)
        return None, [], f"the runs logged no rule shares ({pairs}), so their commitment is undefined"
    names = sorted(commitment.unique())
    if len(names) == 1:
        return None, names, f"every run ends {names[0]}"
    return np.searchsorted(names, commitment.to_numpy()), names, None


@dataclass(frozen=True)
class Prediction:
    """predict.csv, and why the commitment was not predicted (None when it was)."""

    scores: pd.DataFrame
    unclassified: str | None


def predict(table: pd.DataFrame, frames: dict[str, pd.DataFrame], s: Settings = Settings(),
            features: list[str] | None = None, states: pd.DataFrame | None = None) -> Prediction:
    """predict.csv from the run table and each run's series (analysis.runs.read_runs): the baselines and
    `features` (default: every set the runs allow); `states` a training map's hmm_states.csv."""
    aligned = common_steps(frames, table, s.metric)
    labels = outcomes(table, aligned, s)
    y, names, unclassified = classes(labels)
    steps, values, columns = series(table, aligned, s.metric)
    wanted = check_features(features, available(columns, states is not None))
    runs, end = list(table["run"]), labels["end"].to_numpy(float)
    if len(runs) < s.folds:
        raise HierGenError(f"{s.folds}-fold cross-validation needs at least {s.folds} runs (got {len(runs)}): "
                           "pass more runs or fewer --folds")
    n_states = int(states["state"].max()) + 1 if states is not None else 0
    points = cut_points(steps)
    cut_steps = steps[[upto for _, upto in points]]
    sets = [feature_sets(steps, values, columns, upto, s, None if states is None else
                         map_states(states, runs, steps[upto], n_states)) for _, upto in points]
    rng = np.random.default_rng(s.seed)
    permutations = [rng.permutation(len(runs)) for _ in range(s.permutations)]
    parts = []
    with threadpool_limits(1):  # small products: threads would only wait for each other
        for scheme, held_out in schemes(y, table["condition"].astype(str).to_numpy(), s).items():
            for name in [*BASELINES, *wanted]:
                scored, theta = [], None
                for cut in sets:
                    row, proba, theta = score(cut[name], y, end, held_out, permutations, len(names), s, theta)
                    scored.append((row, proba))
                part = pd.DataFrame([row for row, _ in scored]).assign(
                    cutoff=[f for f, _ in points], step=cut_steps.astype(int), features=name, n_runs=len(runs),
                    cv=scheme)
                if y is not None:
                    proba = np.stack([p for _, p in scored])
                    part = pd.concat([part, stopping(proba, y, cut_steps, labels["last_step"].to_numpy(float),
                                                     s.confident)], axis=1)
                parts.append(part)
    # each scheme cut-off by cut-off, the feature sets in their order
    scores = pd.concat(parts, ignore_index=True).reindex(columns=COLUMNS)
    scores = scores.iloc[np.lexsort((scores["cutoff"], scores["cv"] != "runs"))].reset_index(drop=True)
    return Prediction(scores, unclassified)


def check_features(features: list[str] | None, allowed: list[str]) -> list[str]:
    """The feature sets asked for (default: every one allowed, `all` where it adds up two or more), refused in
    one line where the runs lack them."""
    if features is None:
        return [name for name in allowed if name != "all" or len(allowed) > 2]
    for name in features:
        if name not in allowed:
            raise HierGenError(f"--features {name}: {UNAVAILABLE[name]}")
    return features


def parse_features(text: str) -> list[str]:
    """`--features history,weights` as a list, unknown names refused in one line."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in FEATURE_SETS:
            raise HierGenError(f"--features: unknown feature set {name!r} (known: {', '.join(FEATURE_SETS)}; "
                               f"{' and '.join(BASELINES)} are always scored)")
    if not names:
        raise HierGenError(f"--features {text!r} names no feature set")
    return list(dict.fromkeys(names))


def read_map(folder: str, runs: list[str]) -> pd.DataFrame:
    """The states of a training map (`python -m analysis hmm ... --out DIR`), each run's by step."""
    path = os.path.join(folder, MAP_FILE)
    if not os.path.isfile(path):
        raise HierGenError(f"--map {folder} holds no {MAP_FILE} (write one with python -m analysis hmm RUN... "
                           f"--out {folder})")
    try:
        states = pd.read_csv(path)
    except ValueError as e:  # empty, or not CSV
        raise HierGenError(f"{path} cannot be read as a table ({e})") from None
    if not ({"run", "step", "state"} <= set(states.columns) and pd.api.types.is_integer_dtype(states["state"])
            and pd.api.types.is_numeric_dtype(states["step"])):
        raise HierGenError(f"{path} is not a training map: it needs the columns run, step (a number) and state "
                           "(an integer)")
    missing = sorted(set(runs) - set(states["run"].astype(str)))
    if missing:
        raise HierGenError(f"{path} maps no evaluation of run {missing[0]}" +
                           (f" (nor of {len(missing) - 1} more)" if len(missing) > 1 else "") +
                           ": map the runs you predict")
    states = states.assign(run=states["run"].astype(str))
    return states[states["run"].isin(runs)].sort_values(["run", "step"], kind="stable")


# ---- the summary ----

def earliest(rows: pd.DataFrame, column: str, told: float) -> pd.Series | None:
    """The row of the earliest cut-off from which a feature set's score (`column`) stays at `told` or
    above (the first set in order on a tie); None where none does at the last cut-off."""
    best = None
    for name, group in rows.groupby("features", sort=False):
        below = ~(group[column].to_numpy(float) >= told)
        if name == "majority" or below[-1]:
            continue
        first = group.iloc[len(below) - np.argmax(below[::-1]) if below.any() else 0]
        if best is None or first["cutoff"] < best["cutoff"]:
            best = first
    return best


def summary(result: Prediction, s: Settings) -> list[str]:
    """Two sentences per cross-validation scheme: from which cut-off the commitment is told, and what
    stopping runs from there on would have saved; from which cut-off the end value is."""
    lines = []
    for cv, rows in result.scores.groupby("cv", sort=False):
        scheme = "over runs" if cv == "runs" else "leaving one condition out"
        lines += [f"{scheme}: {commitment_told(rows, result.unclassified, s)}", f"{scheme}: {end_told(rows, s)}"]
    return lines


def commitment_told(rows: pd.DataFrame, unclassified: str | None, s: Settings) -> str:
    if unclassified:
        return f"the commitment is not predicted ({unclassified})"
    row, sentence = told(rows, "balanced_accuracy", "the commitment", "balanced accuracy", s)
    if row is None:
        return sentence
    return (f"{sentence}; stopping each run at the first cut-off from there on where the classifier is ≥ "
            f"{s.confident} sure of its outcome would have saved {row['saved_share']:.0%} of the runs' steps, with "
            f"{row['wrong_outcomes']} of the {row['stopped_runs']} stopped runs' outcomes wrong (of {row['n_runs']} runs)")


def end_told(rows: pd.DataFrame, s: Settings) -> str:
    if rows["r2"].isna().all():
        return "the end value does not vary"
    return told(rows, "r2", "the end value", "R²", s)[1]


def told(rows: pd.DataFrame, column: str, what: str, score: str, s: Settings) -> tuple[pd.Series | None, str]:
    """The earliest row from which `what` is told by `column` (None if never), and the sentence saying so."""
    row = earliest(rows, column, s.told)
    if row is None:
        best = rows.loc[rows[column].idxmax()]
        return None, (f"no cut-off tells {what} with {score} ≥ {s.told} (best {best[column]:.2f} at "
                      f"{best['cutoff']:.0%}, features {best['features']})")
    return row, (f"from {row['cutoff']:.0%} of training on (step {row['step']:,}), {what} is told with {score} ≥ "
                 f"{s.told} (features {row['features']})")


def print_scores(scores: pd.DataFrame, column: str) -> None:
    """The score of every feature set at every cut-off, cross-validated over runs."""
    rows = scores[scores["cv"] == "runs"]
    table = rows.set_index(["cutoff", "step", "features"])[column].unstack("features")[rows["features"].unique()]
    table.index = [f"{cutoff:.0%} (step {step:,})" for cutoff, step in table.index]
    print(f"{column} by cut-off and feature set (cross-validated over {rows['n_runs'].iloc[0]} runs):")
    print(table.to_string(float_format="%.2f", na_rep="-"))


# ---- the command ----

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runs(parser)
    parser.add_argument("--metric", default=Settings.metric,
                        help="the generalization metric whose end value and history are read (default: test_aux)")
    parser.add_argument("--features", type=parse_features, default=None,
                        help=f"comma-separated feature sets beside the baselines ({', '.join(BASELINES)}): "
                             f"{', '.join(FEATURE_SETS)} (default: every set the runs and --map allow)")
    parser.add_argument("--map", default=None, metavar="DIR",
                        help=f"a training map (the folder `python -m analysis hmm` wrote {MAP_FILE} into): "
                             "adds the feature set hmm")
    add_count(parser, "--folds", Settings.folds, "folds of the cross-validation over runs", minimum=2)
    add_count(parser, "--permutations", Settings.permutations, "shufflings of the outcomes for the control")
    add_seed(parser, Settings.seed, "seed of the folds and the shufflings")


def command(args: argparse.Namespace) -> None:
    """Check the input, predict at every cut-off, print the table and the summary, write predict.csv and predict.png."""
    s = Settings(metric=args.metric, folds=args.folds, permutations=args.permutations, seed=args.seed)
    out = outputs(args)
    if args.features and "hmm" in args.features and args.map is None:
        raise HierGenError(f"--features hmm: {UNAVAILABLE['hmm']}")
    runs = find_runs(args.runs)
    states = read_map(args.map, [run.name for run in runs]) if args.map else None
    table, frames = read_runs(runs, list(dict.fromkeys([s.metric, *(c for p in RULE_SHARES for c in p),
                                                        PREFIX.rstrip("/")])))
    result = predict(table, frames, s, args.features, states)
    print_scores(result.scores, "r2" if result.unclassified else "balanced_accuracy")
    print("\n".join(summary(result, s)))
    out.write({"predict": result.scores}, {"predict": plot.prediction_scores(result.scores, list(BASELINES), s.told)})
