"""python -m analysis hmm: states recovered from runs of a known process, detours, the command and its refusals."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.hmm import Settings, canonical_labels, detour_table, fit_hmm, training_map, zscore
from helpers import ARGS, TINY_QF_RUN, assert_one_line, evals, read_csv, train, write_run
from models.weight_statistics import NAMES

OUTPUTS = {"hmm_selection.csv": ["n_states", "heldout_loglik_mean", "heldout_loglik_sd", "aic", "bic", "selected"],
           "hmm_states.csv": ["run", "seed", "step", "state"],
           "hmm_transitions.csv": ["from_state", "to_state", "probability", "count"],
           "hmm_detours.csv": ["state", "n_runs_visiting", "r", "p", "obligatory", "detour"]}
# Regime means of the first four statistics; the other ten are noise alone. Each regime moves every
# one of the four from early, so that every run's z-scoring stretches them by their signal.
MEANS = {"early": [0, 0, 0, 0], "middle": [4, -4, 4, -4], "late": [8, 4, -4, 4], "detour": [4, 8, 4, -4]}


def regime_runs(regimes: list[list[str]], seed: int = 0) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """A run table and frames as read_runs returns them: each run's statistics follow its list of
    regimes (one per evaluation) with unit noise; test_aux is 0.95 in the late regime, else 0.1."""
    rng = np.random.default_rng(seed)
    frames = {}
    for i, path in enumerate(regimes):
        x = rng.normal(0, 1, (len(path), len(NAMES)))
        x[:, :4] += np.array([MEANS[r] for r in path])
        steps = pd.Index(np.arange(len(path)) * 1000, name="step")
        frames[f"run{i}"] = pd.DataFrame(x, index=steps, columns=list(NAMES)).assign(
            test_aux=[0.95 if r == "late" else 0.1 for r in path])
    table = pd.DataFrame({"run": list(frames), "condition": "c", "seed": pd.array(range(len(frames)), dtype="Int64")})
    return table, frames


def three_regimes(n_runs: int = 20, n_evals: int = 100, seed: int = 0) -> list[list[str]]:
    """early, middle, late, each run switching at evaluations of its own."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_runs):
        a, b = rng.integers(0.1 * n_evals, 0.4 * n_evals), rng.integers(0.55 * n_evals, 0.85 * n_evals)
        out.append(["early"] * a + ["middle"] * (b - a) + ["late"] * (n_evals - b))
    return out


def with_detour(n_runs: int = 20, n_evals: int = 60, seed: int = 0) -> list[list[str]]:
    """early then late; two runs in three pass through the detour regime between them, reaching late later."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_runs):
        a = rng.integers(0.2 * n_evals, 0.4 * n_evals)
        b = rng.integers(0.7 * n_evals, 0.9 * n_evals) if i % 3 else a
        out.append(["early"] * a + ["detour"] * (b - a) + ["late"] * (n_evals - b))
    return out


def test_the_default_fit_recovers_a_three_state_process():
    regimes = three_regimes()
    selection, states, transitions, detours = training_map(*regime_runs(regimes))
    assert list(selection["n_states"]) == list(range(1, 9))
    assert selection.loc[selection["selected"], "n_states"].tolist() == [3]
    # Numbered by when training visits them, the states are the regimes themselves.
    truth = np.concatenate([[["early", "middle", "late"].index(r) for r in path] for path in regimes])
    assert (states["state"].to_numpy() == truth).mean() >= 0.95
    assert detours["obligatory"].all() and not detours["detour"].any()
    moves = transitions[transitions["count"] > 0]
    assert set(zip(moves["from_state"], moves["to_state"])) >= {(0, 1), (1, 2)}
    assert transitions.groupby("from_state")["probability"].sum().to_numpy() == pytest.approx(1)


def test_a_state_only_slow_runs_visit_is_a_detour():
    regimes = with_detour()
    table, frames = regime_runs(regimes)
    selection, states, _, detours = training_map(table, frames, Settings(max_states=3, restarts=2))
    assert selection.loc[selection["selected"], "n_states"].tolist() == [3]
    slow = {f"run{i}" for i, path in enumerate(regimes) if "detour" in path}
    detour = detours.loc[detours["detour"], "state"].tolist()
    assert len(detour) == 1 and set(states.loc[states["state"] == detour[0], "run"]) == slow
    row = detours.set_index("state").loc[detour[0]]
    assert row["n_runs_visiting"] == len(slow) and row["r"] > 0.8 and row["p"] < 0.05 and not row["obligatory"]
    assert detours.loc[~detours["detour"], "obligatory"].all()


@pytest.mark.parametrize("outliers", [False, True])
def test_the_scaling_fit_is_the_log_space_fit(outliers):
    """EM in the scaling implementation (the fast path) gives the fit of log space; where an evaluation
    no state explains makes it underflow, the fit falls back to log space."""
    _, frames = regime_runs(three_regimes(n_runs=6, n_evals=50))
    runs = [zscore(frame[list(NAMES)].to_numpy(float)) for frame in frames.values()]
    x, lengths = np.concatenate(runs), [len(r) for r in runs]
    if outliers:  # one state cannot hold these: the scaled forward pass underflows
        x[[40, 160], :] += [[100.0], [-100.0]]
    fast, plain = (fit_hmm(x, lengths, 3 - 2 * outliers, 7, implementation) for implementation in ("scaling", "log"))
    assert fast.implementation == plain.implementation == "log"
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        assert getattr(fast, name) == pytest.approx(getattr(plain, name), rel=1e-6, abs=1e-9), name
    assert fast.score(x, lengths) == pytest.approx(plain.score(x, lengths), rel=1e-9)


def test_zscore_is_per_column_and_leaves_constant_columns_at_zero():
    x = np.column_stack([[1.0, 2.0, 3.0], [0.1, 0.1, 0.1], [5.0, 5.0, 8.0]])
    z = zscore(x)
    assert z[:, 0] == pytest.approx([-1.2247449, 0, 1.2247449])
    assert (z[:, 1] == 0).all() and z[:, 2].mean() == pytest.approx(0) and z[:, 2].std() == pytest.approx(1)


def test_states_are_numbered_by_when_training_visits_them():
    # Fitted state 2 holds the first evaluations, 0 the last, 1 none: 2 -> 0, 0 -> 1, unvisited 1 last.
    assert canonical_labels([np.array([2, 2, 0, 0]), np.array([2, 0, 0])], 3).tolist() == [1, 2, 0]


def test_a_visit_indicator_that_never_varies_has_no_correlation():
    states = pd.DataFrame({"run": ["a", "a", "b", "c"], "state": [0, 1, 0, 0]})
    converged = pd.Series({"a": 9000.0, "b": 2000.0, "c": 3000.0})
    table = detour_table(states, converged, 3).set_index("state")
    assert np.isnan(table.loc[0, "r"]) and table.loc[0, "obligatory"] and not table.loc[0, "detour"]
    assert table.loc[1, "r"] > 0 and not table.loc[1, "obligatory"] and table.loc[1, "n_runs_visiting"] == 1
    assert np.isnan(table.loc[2, "p"]) and table.loc[2, "n_runs_visiting"] == 0 and not table.loc[2, "obligatory"]


def write_runs(root, regimes: list[list[str]], stats: bool = True) -> str:
    """Run directories of regime_runs (metrics.jsonl with the statistics in the evaluation events); their glob."""
    _, frames = regime_runs(regimes)
    for i, frame in enumerate(frames.values()):
        series = {name: frame[name].tolist() for name in NAMES} if stats else {}
        events = evals(frame.index.tolist(), frame["test_aux"].tolist(), **series)
        write_run(root / f"run{i}", {**ARGS, "seed": i}, events)
    return str(root / "run*")


def test_the_command_writes_every_output_and_reruns_identically(tmp_path, capsys):
    runs = write_runs(tmp_path, with_detour(n_evals=40))
    for out in ("a", "b"):
        assert main(["hmm", runs, "--max_states", "3", "--restarts", "2", "--out", str(tmp_path / out)]) == 0
    printed = capsys.readouterr().out
    assert "selected: 3 states" in printed and f"to {tmp_path / 'b'}" in printed
    for name, columns in OUTPUTS.items():
        assert list(read_csv(tmp_path / "a" / name).columns) == columns
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert len(read_csv(tmp_path / "a" / "hmm_states.csv")) == 20 * 40
    for figure in ("hmm_graph.png", "hmm_curves.png"):
        assert os.path.getsize(tmp_path / "a" / figure) > 10_000


def test_the_command_on_tiny_multi_seed_training_runs(qf_dir, tmp_path, capsys):
    assert train(qf_dir, *TINY_QF_RUN, "--seeds", "1,2,3,4,5", "--max_train_steps", "28", "--eval_every", "2",
                 "--save_dir", str(tmp_path), "--save_prefix", "tiny") == 0
    out = tmp_path / "analysis"
    assert main(["hmm", str(tmp_path / "tiny_seed*"), "--metric", "val_aux", "--max_states", "2", "--restarts", "2",
                 "--out", str(out)]) == 0
    states = read_csv(out / "hmm_states.csv")
    assert sorted(states["seed"].unique()) == [1, 2, 3, 4, 5]
    assert (states.groupby("run")["step"].apply(list) == [list(range(0, 29, 2))] * 5).all()
    transitions = read_csv(out / "hmm_transitions.csv")
    assert transitions.groupby("from_state")["probability"].sum().to_numpy() == pytest.approx(1)
    assert transitions["count"].sum() == 5 * 14
    assert "wrote hmm_selection.csv" in capsys.readouterr().out


@pytest.mark.parametrize("n_runs, n_evals, stats, flags, fragments", [
    (4, 20, True, [], ["at least 5 runs", "got 4"]),
    (6, 20, False, [], ["run run0 never logged the weight statistics", "--no_weight_stats"]),
    (6, 20, True, ["--metric", "val_aux"], ["metric val_aux was never logged by run run0"]),
    (6, 20, True, [], ["too few evaluations to fit 8 states", "--max_states"]),
    (6, 20, True, ["--restarts", "0"], ["--restarts must be at least 1"]),
    (6, 20, True, ["--seed", "-1"], ["--seed must be between 0 and 4294967295"]),
])
def test_bad_input_is_refused_in_one_line(tmp_path, capsys, n_runs, n_evals, stats, flags, fragments):
    runs = write_runs(tmp_path, with_detour(n_runs=n_runs, n_evals=n_evals), stats)
    out = tmp_path / "out"
    assert main(["hmm", runs, *flags, "--out", str(out)]) == 2
    assert_one_line(capsys.readouterr().err, *fragments)
    assert not out.exists()
