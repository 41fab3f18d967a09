"""`python -m analysis predict`: synthetic runs whose outcome shows early, late or never are told from
the right cut-off; no run's future or own outcome leaks into its prediction; the batched fits agree
with scikit-learn; the stopping rule by hand; bad input; end to end on a tiny `--seeds` sweep."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from analysis.__main__ import main as analysis
from analysis.predict import (COLUMNS, Settings, balanced_accuracy, earliest, predict, r2, ridge, schemes,
                              softmax_regression, stopping, summary)
from helpers import ARGS, assert_one_line, assert_opens, evals, read_csv, write_run
from models.weight_statistics import NAMES

EVERY = 100


def synthetic(onset: float | None, where: str = "weights", n_runs: int = 30, n_evals: int = 101, seed: int = 0,
              n_conditions: int = 1) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Runs that end hierarchical or linear (half each): test_aux and the 14 statistics are noise, and
    from `onset` (a share of training) on the outcome shows in `where` (the metric or the weights);
    the last 5 evaluations hold the end. As read_runs returns them: the run table and frames by step."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n_evals) * EVERY
    hierarchical = rng.permutation(n_runs) % 2 == 1
    shows = (steps >= onset * steps[-1]) if onset is not None else np.zeros(n_evals, bool)
    sign = np.where(hierarchical, 1.0, -1.0)[:, None] * shows
    a = 0.5 + rng.normal(0, 0.05, (n_runs, n_evals)) + (0.3 * sign if where == "metric" else 0)
    a[:, -5:] = np.where(hierarchical, 0.99, 0.01)[:, None]
    w = rng.normal(0, 1, (n_runs, n_evals, len(NAMES))) + (3 * sign[:, :, None] if where == "weights" else 0)
    frames = {f"run{i}": pd.DataFrame(w[i], index=pd.Index(steps, name="step"), columns=list(NAMES)).assign(
        test_aux=a[i], test_hierarchical=a[i], test_linear=1 - a[i]) for i in range(n_runs)}
    table = pd.DataFrame({"run": list(frames),
                          "condition": pd.Categorical([f"lr={i % n_conditions}" for i in range(n_runs)]),
                          "seed": pd.array(range(n_runs), dtype="Int64")})
    return table, frames


def runs_rows(scores: pd.DataFrame) -> pd.DataFrame:
    return scores[scores["cv"] == "runs"]


@pytest.mark.parametrize("onset, where, cutoff, features", [
    (0.05, "weights", 0.05, "weights"),  # the weights tell from 5%; the metric never
    (0.75, "metric", 0.8, "current"),    # the metric tells from 75%: the first cut-off after is 80%
    (None, None, None, None),            # nothing tells until the end
])
def test_the_outcome_is_told_from_the_cut_off_where_it_shows(onset, where, cutoff, features):
    result = predict(*synthetic(onset, where))
    rows = runs_rows(result.scores)
    told = earliest(rows, "balanced_accuracy", 0.9)
    if cutoff is None:
        assert told is None
        assert "no cut-off tells the commitment" in summary(result, Settings())[0]
    else:
        assert (told["cutoff"], told["features"]) == (cutoff, features)
        assert summary(result, Settings())[0].startswith(f"over runs: from {cutoff:.0%} of training on")
        # before it shows, nothing tells; and the shuffled outcomes never
        assert (rows.loc[rows["cutoff"] < onset, "balanced_accuracy"] < 0.9).all()
    assert rows["permuted_balanced_accuracy"].max() < 0.8
    assert rows.loc[rows["features"] == "majority", "balanced_accuracy"].eq(0.5).all()
    if where == "weights":  # the metric says nothing before the end
        assert rows.loc[rows["features"] == "current", "balanced_accuracy"].max() < 0.9


def test_an_early_outcome_saves_most_steps_and_gets_none_wrong():
    rows = runs_rows(predict(*synthetic(0.05, "weights")).scores)
    at = rows[(rows["cutoff"] == 0.05) & (rows["features"] == "weights")].iloc[0]
    assert at["stopped_runs"] >= 25 and at["wrong_outcomes"] == 0 and at["saved_share"] > 0.8
    # from the last cut-off on, the rule stops runs at 90% at best
    assert (rows.loc[rows["cutoff"] == 0.9, "saved_share"] <= 0.1).all()


def test_leaving_one_condition_out_is_scored_with_several_conditions():
    scores = predict(*synthetic(0.05, "weights", n_conditions=3)).scores
    assert list(scores.columns) == COLUMNS
    assert list(dict.fromkeys(scores["cv"])) == ["runs", "conditions"]
    assert list(dict.fromkeys(scores["cutoff"])) == [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert list(dict.fromkeys(scores["features"])) == ["majority", "current", "history", "shares", "weights", "all"]
    assert (scores["n_runs"] == 30).all() and scores["step"].iloc[0] == 100  # 1% of 10,000 steps


def test_a_runs_future_does_not_change_what_is_told_before_it():
    """Changing every run's evaluations after 50% (not its end, so not its outcome) leaves every score
    up to 50% as it was; the stopping columns look at later cut-offs by design and are left out."""
    table, frames = synthetic(0.05, "weights")
    rng = np.random.default_rng(1)
    changed = {}
    for name, frame in frames.items():
        frame = frame.copy()
        future = (frame.index > 0.5 * frame.index[-1]) & (frame.index < frame.index[-5])
        frame.loc[future] = rng.normal(0, 1, (future.sum(), frame.shape[1]))
        changed[name] = frame
    before, after = predict(table, frames).scores, predict(table, changed).scores
    early = before["cutoff"] <= 0.5
    scored = COLUMNS[:10]
    pd.testing.assert_frame_equal(before.loc[early, scored], after.loc[early, scored])
    assert not before.loc[~early, "r2"].equals(after.loc[~early, "r2"])


@pytest.mark.parametrize("n_conditions", [1, 3])
def test_a_runs_own_outcome_never_trains_its_prediction(n_conditions):
    """Changing a run's outcome leaves its own prediction as it was."""
    rng = np.random.default_rng(2)
    n = 24
    x = rng.normal(size=(n, 3))
    y, end = rng.integers(0, 3, n), rng.normal(size=n)
    conditions = np.arange(n) % n_conditions
    for held_out in schemes(y, conditions, Settings(folds=4)).values():
        assert (held_out.sum(0) == 1).all()  # every run held out once
        proba = softmax_regression(x, held_out, y[None], 3, 0.1)[0][0]
        predicted = ridge(x, held_out, end[None], 10.0)[0]
        for run in (0, 7):
            other_y, other_end = y.copy(), end.copy()
            other_y[run], other_end[run] = (y[run] + 1) % 3, end[run] + 100
            assert np.allclose(softmax_regression(x, held_out, other_y[None], 3, 0.1)[0][0][run], proba[run],
                               atol=1e-12, rtol=0)
            assert ridge(x, held_out, other_end[None], 10.0)[0][run] == pytest.approx(predicted[run], abs=1e-12)
    if n_conditions > 1:
        assert [set(np.flatnonzero(h)) for h in schemes(y, conditions, Settings(folds=4))["conditions"]] == \
            [set(np.flatnonzero(conditions == c)) for c in range(3)]


def test_the_batched_fits_and_scores_are_scikit_learns():
    rng = np.random.default_rng(3)
    n = 60
    y = rng.integers(0, 3, n)
    x = np.column_stack([rng.normal(size=n) + y, rng.normal(size=n), np.ones(n)])
    end = x[:, 0] + rng.normal(size=n)
    held_out = np.stack([np.arange(n) % 3 == f for f in range(3)])
    proba = softmax_regression(x, held_out, y[None], 3, 0.5)[0][0]
    predicted = ridge(x, held_out, end[None], 2.0)[0]
    for test in held_out:
        train = ~test
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000))
        assert np.abs(classifier.fit(x[train], y[train]).predict_proba(x[test]) - proba[test]).max() < 1e-5
        regressor = make_pipeline(StandardScaler(), Ridge(alpha=2.0)).fit(x[train], end[train])
        assert np.allclose(regressor.predict(x[test]), predicted[test])
    shuffled = rng.permutation(y)
    assert balanced_accuracy(np.stack([y, shuffled]), np.stack([proba.argmax(1)] * 2), 3) == pytest.approx(
        [balanced_accuracy_score(y, proba.argmax(1)), balanced_accuracy_score(shuffled, proba.argmax(1))])
    assert r2(end, predicted) == pytest.approx(r2_score(end, predicted))


def test_a_class_absent_from_training_gets_probability_zero():
    x = np.arange(12.0)[:, None]
    y = np.array([0] * 6 + [1] * 5 + [2])
    held_out = np.stack([np.arange(12) == 11, np.arange(12) != 11])  # the one run of class 2 held out alone
    proba = softmax_regression(x, held_out, y[None], 3, 0.1)[0][0]
    assert proba[11, 2] == 0 and proba[11].sum() == pytest.approx(1)


def test_the_stopping_rule_by_hand():
    # 3 cut-offs at steps 10, 50, 90 of runs of 100 steps; proba: cut-off x run x class
    proba = np.array([[[0.97, 0.03], [0.6, 0.4], [0.5, 0.5]],
                      [[0.99, 0.01], [0.02, 0.98], [0.6, 0.4]],
                      [[0.99, 0.01], [0.01, 0.99], [0.96, 0.04]]])
    y = np.array([0, 1, 1])  # run 2 ends class 1: stopped at 90% predicting 0, wrongly
    table = stopping(proba, y, np.array([10.0, 50.0, 90.0]), np.full(3, 100.0), 0.95)
    assert table["stopped_runs"].tolist() == [3, 3, 3]
    assert table["saved_share"].tolist() == pytest.approx([(90 + 50 + 10) / 300, (50 + 50 + 10) / 300, 30 / 300])
    assert table["wrong_outcomes"].tolist() == [1, 1, 1]
    # run 1 unsure until the last cut-off: from there on it is not stopped
    proba[2, 1] = [0.5, 0.5]
    assert stopping(proba, y, np.array([10.0, 50.0, 90.0]), np.full(3, 100.0), 0.95)["stopped_runs"].tolist() == \
        [3, 3, 2]


def test_runs_of_one_outcome_get_the_end_value_alone():
    table, frames = synthetic(0.05, "metric")
    for frame in frames.values():  # every run commits to the hierarchical rule, its test_aux ends as it did
        frame.iloc[-5:, frame.columns.get_indexer(["test_hierarchical"])] = 0.99
        frame.iloc[-5:, frame.columns.get_indexer(["test_linear"])] = 0.01
    result = predict(table, frames)
    assert result.unclassified == "every run ends hierarchical"
    scores = result.scores
    assert scores[["balanced_accuracy", "auc", "permuted_balanced_accuracy", "stopped_runs"]].isna().all().all()
    assert scores["r2"].notna().all() and scores["r2"].max() > 0.9
    said = summary(result, Settings())
    assert said[0] == "over runs: the commitment is not predicted (every run ends hierarchical)"
    assert said[1].startswith("over runs: from 5% of training on (step 500), the end value is told with R² ≥ 0.9")
    for frame in frames.values():  # and now every run ends at 0.99
        frame.iloc[-5:, frame.columns.get_indexer(["test_aux"])] = 0.99
    result = predict(table, frames)
    assert result.scores["r2"].isna().all()
    assert summary(result, Settings())[1] == "over runs: the end value does not vary"


# ---- the command line ----

def write_sweep(root, n_runs: int = 10, weights: bool = True, onset: float = 0.2) -> str:
    """Run directories of `synthetic` runs (two learning rates); their glob."""
    table, frames = synthetic(onset, "metric", n_runs=n_runs, n_evals=21, n_conditions=2)
    for row in table.itertuples():
        frame = frames[row.run] if weights else frames[row.run].drop(columns=list(NAMES))
        series = {c: frame[c].to_numpy() for c in frame if c != "test_aux"}
        args = {**ARGS, "lr": 1e-4 * (1 + int(row.condition[-1])), "seed": int(row.seed)}
        write_run(root / row.run, args, evals(frame.index, frame["test_aux"].to_numpy(), **series))
    return str(root / "run*")


def write_map(folder, runs: list[str], steps) -> str:
    folder.mkdir()
    rows = [{"run": run, "seed": 0, "step": step, "state": int(step >= 1000)} for run in runs for step in steps]
    pd.DataFrame(rows).to_csv(folder / "hmm_states.csv", index=False)
    return str(folder)


def test_the_command_writes_its_table_and_figure_and_says_from_when(tmp_path, capsys):
    runs, out = write_sweep(tmp_path / "runs"), tmp_path / "out"
    state_map = write_map(tmp_path / "map", [f"run{i}" for i in range(10)], range(0, 2100, 100))
    assert analysis(["predict", runs, "--map", state_map, "--folds", "2", "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["predict.csv", "predict.png"]
    scores = read_csv(out / "predict.csv")
    assert list(scores.columns) == COLUMNS
    assert set(scores["features"]) == {"majority", "current", "history", "shares", "weights", "hmm", "all"}
    printed = capsys.readouterr().out
    assert "balanced_accuracy by cut-off and feature set (cross-validated over 10 runs)" in printed
    assert "over runs: from 20% of training on (step 400), the commitment is told with balanced accuracy ≥ 0.9" \
        in printed
    assert f"wrote predict.csv, predict.png to {out}" in printed


def test_the_figure_is_written_in_the_format_asked(tmp_path, capsys):
    runs, out = write_sweep(tmp_path / "runs"), tmp_path / "out"
    assert analysis(["predict", runs, "--folds", "2", "--format", "svg", "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["predict.csv", "predict.svg"]
    assert_opens(out / "predict.svg")


def bad_input(tmp_path) -> dict[str, tuple[list[str], str]]:
    runs = write_sweep(tmp_path / "runs")
    few = write_sweep(tmp_path / "few", n_runs=4)
    unweighted = write_sweep(tmp_path / "unweighted", weights=False)
    (tmp_path / "empty_map").mkdir()
    partial = write_map(tmp_path / "partial_map", ["run0"], [0, 100])
    (tmp_path / "other_table").mkdir()
    (tmp_path / "other_table" / "hmm_states.csv").write_text("run,step\nrun0,0\n")
    return {
        "fewer runs than folds": ([few], "5-fold cross-validation needs at least 5 runs (got 4)"),
        "one fold": ([runs, "--folds", "1"], "--folds must be at least 2 (got 1)"),
        "unknown feature set": ([runs, "--features", "history,loss"], "unknown feature set 'loss'"),
        "hmm without a map": ([runs, "--features", "hmm"], "--features hmm: it needs a training map (--map DIR)"),
        "map without its table": ([runs, "--map", str(tmp_path / "empty_map")], "holds no hmm_states.csv"),
        "map of other runs": ([runs, "--map", partial], "maps no evaluation of run run1 (nor of 8 more)"),
        "map of another table": ([runs, "--map", str(tmp_path / "other_table")], "is not a training map"),
        "metric never logged": ([runs, "--metric", "test_agree_subject"], "never logged"),
        "weights never logged": ([unweighted, "--features", "weights"],
                                 "not every run logged the 14 weight statistics"),
    }


@pytest.mark.parametrize("case", ["fewer runs than folds", "one fold", "unknown feature set", "hmm without a map",
                                  "map without its table", "map of other runs", "map of another table",
                                  "metric never logged",
                                  "weights never logged"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, case):
    argv, message = bad_input(tmp_path)[case]
    out = tmp_path / "out"
    assert analysis(["predict", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert_one_line(err, message)
    assert not out.exists()


@pytest.mark.slow
def test_predict_on_a_tiny_seeds_sweep(sweep, tmp_path, capsys):
    """Eight tiny runs (4 seeds x 2 datasets, 40 steps, 5 evaluations) with a map of them."""
    runs = sorted(os.listdir(sweep))
    state_map = write_map(tmp_path / "map", runs, range(0, 50, 10))
    out = tmp_path / "out"
    assert analysis(["predict", os.path.join(sweep, "*"), "--map", state_map, "--folds", "4", "--out", str(out)]) == 0
    scores = read_csv(out / "predict.csv")
    assert list(dict.fromkeys(scores["cv"])) == ["runs", "conditions"] and (scores["n_runs"] == 8).all()
    assert {"weights", "hmm", "all"} <= set(scores["features"]) and scores["r2"].notna().all()
    printed = capsys.readouterr().out
    assert printed.count("over runs: ") == 2 and printed.count("leaving one condition out: ") == 2
    assert (out / "predict.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
