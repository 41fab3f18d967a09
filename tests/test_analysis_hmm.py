"""python -m analysis hmm: states recovered from runs of known processes (a property test over generated
sweeps), failed restarts, the selection table, detours, the command and its refusals."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hmmlearn.hmm import GaussianHMM
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import train_test_split

import analysis.hmm
from analysis.__main__ import main
from analysis.hmm import (Settings, canonical_labels, detour_table, fit_hmm, fit_restart, notes, split,
                          standardise, training_map, zscore)
from bench.hmm import sweep
from helpers import ARGS, TINY_QF_RUN, assert_one_line, assert_opens, evals, read_csv, train, write_run
from models.weight_statistics import NAMES

OUTPUTS = {"hmm_selection.csv": ["n_states", "heldout_loglik_mean", "heldout_loglik_sd", "heldout_loglik_best", "aic",
                                 "bic", "aic_mean_restarts", "bic_mean_restarts", "restarts_used", "failed",
                                 "selected"],
           "hmm_states.csv": ["run", "seed", "step", "state"],
           "hmm_transitions.csv": ["from_state", "to_state", "probability", "count"],
           "hmm_detours.csv": ["state", "n_runs_visiting", "r", "p", "obligatory", "detour"]}
# Regime means of the first four statistics; the other ten are noise alone.
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
    no state explains makes it underflow, it fails and the restart is the log-space fit."""
    _, frames = regime_runs(three_regimes(n_runs=6, n_evals=50))
    runs = [zscore(frame[list(NAMES)].to_numpy(float)) for frame in frames.values()]
    if outliers:  # one state cannot hold these: the scaled forward pass underflows
        runs[0][40] += 100.0
        runs[3][10] -= 100.0
    fit, heldout, n_states = runs[:5], runs[5:], 3 - 2 * outliers
    x, lengths = np.concatenate(fit), [len(r) for r in fit]
    assert (fit_hmm(x, lengths, n_states, 7, "scaling") is None) == outliers
    restart, _ = fit_restart(fit, heldout, n_states, 7)
    plain = fit_hmm(x, lengths, n_states, 7, "log")
    assert restart.implementation == plain.implementation == "log"
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        assert getattr(restart, name) == pytest.approx(getattr(plain, name), rel=1e-6, abs=1e-9), name
    assert restart.score(x, lengths) == pytest.approx(plain.score(x, lengths), rel=1e-9)


def test_zscore_is_per_column_and_leaves_constant_columns_at_zero():
    x = np.column_stack([[1.0, 2.0, 3.0], [0.1, 0.1, 0.1], [5.0, 5.0, 8.0]])
    z = zscore(x)
    assert z[:, 0] == pytest.approx([-1.2247449, 0, 1.2247449])
    assert (z[:, 1] == 0).all() and z[:, 2].mean() == pytest.approx(0) and z[:, 2].std() == pytest.approx(1)


def test_global_zscoring_keeps_one_scale_for_all_runs():
    a = np.column_stack([[1.0, 2.0], [0.1, 0.1], [4.0, 4.0]])
    b = np.column_stack([[3.0, 4.0, 5.0], [0.1, 0.1, 0.1], [4.0, 4.0, 6.0]])
    together = standardise([a, b], "global")
    assert [len(z) for z in together] == [2, 3]
    assert np.concatenate(together) == pytest.approx(zscore(np.concatenate([a, b])))
    assert (together[0][:, 1] == 0).all() and (together[1][:, 1] == 0).all()  # constant in all runs
    assert together[0][0, 2] == together[0][1, 2] < 0  # constant in one run only: a level, not a 0
    # per run, the same values sit at different places: 1 -> 2 is a whole spread in a, half of b's
    apart = [standardise([a, b], "per_run")[0], standardise([a, b], "per_run")[1]]
    assert apart[0][:, 0] == pytest.approx([-1, 1]) and apart[1][:, 0] == pytest.approx([-1.2247449, 0, 1.2247449])


def test_the_heldout_runs_are_counted_as_train_test_split_counts_them():
    for n in range(5, 61):
        fit, heldout = split([f"run{i}" for i in range(n)], seed=n)
        assert len(heldout) == len(train_test_split(range(n), test_size=0.2)[1]), n
        assert sorted(fit + heldout) == sorted(f"run{i}" for i in range(n))
    assert len(split(list("abcdefg"), 0)[1]) == 2  # 7 runs: 1.4 rounds up


def drawn_sweep(seed: int, separated: bool) -> tuple[tuple, Settings]:
    """The arguments of bench.hmm.sweep drawn from `seed`, and the settings to map it with: 2-6 states,
    noise 0.1-3, constant statistics, runs of unequal length; either any separation 0.5-6 on 5-12 runs
    of 25-60 evaluations, or a separation 2.5-6 times the noise on 10-15 runs of 60-100 evaluations,
    enough for the held-out runs to show every state (sweep's even shares: none left to a few)."""
    rng = np.random.default_rng([24, seed])
    n_states, noise = int(rng.integers(2, 7)), rng.uniform(0.1, 3.0)
    if separated:
        separation = noise * rng.uniform(2.5, 6.0)
        n_runs, n_evals = int(rng.integers(10, 16)), int(rng.integers(60, 101))
        settings = Settings(max_states=n_states + 2, restarts=3)
    else:
        separation, n_runs, n_evals = rng.uniform(0.5, 6.0), int(rng.integers(5, 13)), int(rng.integers(25, 61))
        settings = Settings(max_states=int(rng.integers(2, 9)), restarts=2)
    n_constant, short_runs = int(rng.integers(0, 4)), bool(rng.integers(2))
    return (n_states, separation, noise, n_runs, n_evals, n_constant, short_runs, seed), settings


def assert_a_map(selection: pd.DataFrame, states: pd.DataFrame, frames: dict, s: Settings) -> None:
    assert list(selection["n_states"]) == list(range(1, len(selection) + 1)) and 2 <= len(selection) <= s.max_states
    assert selection["restarts_used"].between(0, s.restarts).all()
    assert (selection["failed"] == (selection["restarts_used"] == 0)).all()
    assert selection["selected"].sum() == 1 and not selection.loc[selection["selected"], "failed"].any()
    assert len(states) == sum(len(f) for f in frames.values()) and states["state"].notna().all()


@pytest.mark.parametrize("seed", range(6))
def test_any_generated_sweep_gets_a_map(seed):
    args, s = drawn_sweep(seed, separated=False)
    table, frames, _ = sweep(*args)
    selection, states, _, _ = training_map(table, frames, s)
    assert_a_map(selection, states, frames, s)


@pytest.mark.parametrize("seed", range(6))
def test_well_separated_states_are_found(seed):
    args, s = drawn_sweep(seed, separated=True)
    table, frames, truth = sweep(*args)
    selection, states, _, _ = training_map(table, frames, s)
    assert_a_map(selection, states, frames, s)
    assert selection.loc[selection["selected"], "n_states"].tolist() == [args[0]]
    assert adjusted_rand_score(np.concatenate([truth[n] for n in table["run"]]), states["state"]) >= 0.85


@pytest.mark.parametrize("n_runs, n_evals", [(5, 25), (6, 32), (8, 40)])
def test_few_evaluations_cap_the_state_counts(n_runs, n_evals):
    table, frames, _ = sweep(3, 3.0, 1.0, n_runs, n_evals, n_constant=1, seed=n_runs)
    s = Settings(restarts=2)
    selection, states, _, _ = training_map(table, frames, s)
    assert_a_map(selection, states, frames, s)
    n_fit = (n_runs - int(np.ceil(0.2 * n_runs))) * n_evals
    top = len(selection)
    assert top < s.max_states and analysis.hmm.n_parameters(top, 14) <= n_fit < analysis.hmm.n_parameters(top + 1, 14)
    assert notes(selection, s)[0].startswith(f"the data capped the state counts at {top} (--max_states 8)")


def test_evaluations_with_a_value_that_is_not_finite_are_left_out():
    table, frames, _ = sweep(3, 3.0, 1.0, 6, 30, seed=2)
    frames["run0"].iloc[4, 3] = np.inf  # JSON's Infinity
    frames["run2"].iloc[7, 5] = np.nan  # trace / spectral of an all-zero matrix
    selection, states, _, _ = training_map(table, frames, Settings(max_states=3, restarts=2))
    assert not selection["failed"].any() and len(states) == 6 * 30 - 2
    steps = states.groupby("run")["step"].apply(set)
    assert 400 not in steps["run0"] and 700 not in steps["run2"] and 400 in steps["run1"]


def test_em_that_empties_a_state_returns_nan_and_the_fit_fails():
    """A real case: 5 states for a 2-state sweep. EM leaves a state without evaluations and hmmlearn
    returns NaN parameters, raising nothing, in either implementation; the restart is dropped."""
    table, frames, _ = sweep(2, 3.0, 1.0, 8, 50, n_constant=2, seed=1)
    runs = standardise([f[list(NAMES)].to_numpy(float) for f in frames.values()], "global")
    x, lengths = np.concatenate(runs), [len(r) for r in runs]
    raw = GaussianHMM(5, covariance_type="diag", n_iter=analysis.hmm.N_ITER, random_state=1, implementation="scaling")
    raw.monitor_ = analysis.hmm.StopsAtNaN(raw.tol, raw.n_iter, verbose=False)  # not 200 iterations of NaN
    with analysis.hmm.quiet():
        raw.fit(x, lengths)
        assert np.isnan(raw.startprob_).any() and np.isnan(raw.means_).any()
        assert fit_hmm(x, lengths, 5, 1, "scaling") is None and fit_hmm(x, lengths, 5, 1, "log") is None
        assert fit_restart(runs, runs[:1], 5, 1) is None


def test_failed_restarts_are_refitted_in_log_space_dropped_and_counted(monkeypatch):
    """A restart that fails in the scaling implementation, or scores a held-out run as not finite, is
    refitted in log space; one that fails there too is dropped; a count without restarts is skipped."""
    real, calls = analysis.hmm.fit_hmm, []
    second = int(np.random.SeedSequence(0).generate_state(2)[1])

    def flaky(x, lengths, n_states, random_state, implementation="scaling"):
        calls.append((n_states, implementation))
        if (n_states, implementation) in {(2, "scaling"), (3, "scaling"), (3, "log")} or \
                (n_states, random_state, implementation) == (1, second, "log"):
            return None
        model = real(x, lengths, n_states, random_state, implementation)
        if (n_states, random_state) == (1, second):
            model.score = lambda *args: -np.inf
        return model
    monkeypatch.setattr(analysis.hmm, "fit_hmm", flaky)
    s = Settings(max_states=3, restarts=2)
    selection, states, _, _ = training_map(*regime_runs(three_regimes(n_runs=6, n_evals=30)), s)
    assert sorted(calls) == [(1, "log"), (1, "scaling"), (1, "scaling"), (2, "log"), (2, "log"), (2, "scaling"),
                             (2, "scaling"), (3, "log"), (3, "log"), (3, "scaling"), (3, "scaling")]
    assert selection["restarts_used"].tolist() == [1, 2, 0] and selection["failed"].tolist() == [False, False, True]
    assert np.isnan(selection.loc[0, "heldout_loglik_sd"])  # one restart: no SD
    assert selection.loc[2].drop(["n_states", "restarts_used", "failed", "selected"]).isna().all()
    assert selection["selected"].tolist() == [False, True, False]
    assert notes(selection, s) == [
        "1 restarts dropped: EM gave non-finite parameters or held-out likelihoods in both the scaling and the "
        "log-space implementation",
        "failed, every restart dropped, and skipped: [3] states",
        "the held-out BIC still falls at 2 states, the most fitted: the cap decided the count, not the data "
        "(raise --max_states)"]


def test_the_selection_table_reports_the_restarts_and_keeps_the_best():
    table, frames = regime_runs(three_regimes(n_runs=8, n_evals=40))
    s = Settings(max_states=4, restarts=3)
    selection, _, _, _ = training_map(table, frames, s)
    runs = dict(zip(frames, standardise([f[list(NAMES)].to_numpy(float) for f in frames.values()], "global")))
    fit, heldout = split(list(frames), s.seed)
    x, lengths = np.concatenate([runs[n] for n in heldout]), [len(runs[n]) for n in heldout]
    for row in selection.itertuples():
        with analysis.hmm.quiet():
            models = [fit_restart([runs[n] for n in fit], [runs[n] for n in heldout], row.n_states, int(r))[0]
                      for r in np.random.SeedSequence(s.seed).generate_state(s.restarts)]
            loglik = np.array([m.score(x, lengths) for m in models])
            aic, bic = np.array([m.aic(x, lengths) for m in models]), np.array([m.bic(x, lengths) for m in models])
        best = np.argmax(loglik)
        assert row.heldout_loglik_mean == pytest.approx(loglik.mean() / len(x))
        assert row.heldout_loglik_sd == pytest.approx(loglik.std(ddof=1) / len(x))
        assert row.heldout_loglik_best == pytest.approx(loglik[best] / len(x))
        assert (row.aic, row.bic) == pytest.approx((aic[best], bic[best]))  # hmmlearn's own AIC and BIC
        assert (row.aic_mean_restarts, row.bic_mean_restarts) == pytest.approx((aic.mean(), bic.mean()))
        assert row.restarts_used == 3 and not row.failed
    assert selection.loc[selection["bic"].idxmin(), "selected"] and selection["selected"].sum() == 1


def test_the_summary_says_what_capped_the_count():
    table = pd.DataFrame({"n_states": [1, 2, 3], "restarts_used": 5, "failed": False, "bic": [3.0, 2.0, 1.0],
                          "selected": [False, False, True]})
    assert notes(table, Settings()) == [
        "the data capped the state counts at 3 (--max_states 8): a model of 4 states has 127 parameters, more "
        "than the fit runs have evaluations",
        "the held-out BIC still falls at 3 states, the most fitted: the cap decided the count, not the data "
        "(more runs or evaluations would allow more)"]
    assert notes(table.assign(bic=[3.0, 1.0, 2.0], selected=[False, True, False]), Settings(max_states=3)) == []


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
    flags = ["--max_states", "3", "--restarts", "2"]
    for out in ("a", "b"):
        assert main(["hmm", runs, *flags, "--out", str(tmp_path / out)]) == 0
    printed = capsys.readouterr().out
    assert "selected: 3 states" in printed and f"to {tmp_path / 'b'}" in printed
    for name, columns in OUTPUTS.items():
        assert list(read_csv(tmp_path / "a" / name).columns) == columns
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert len(read_csv(tmp_path / "a" / "hmm_states.csv")) == 20 * 40
    for figure in ("hmm_selection.png", "hmm_graph.png", "hmm_curves.png"):
        assert os.path.getsize(tmp_path / "a" / figure) > 10_000


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_the_figures_are_written_in_the_format_asked(tmp_path, capsys, fmt):
    out = tmp_path / "out"
    runs = write_runs(tmp_path, with_detour(n_runs=5, n_evals=20))
    assert main(["hmm", runs, "--max_states", "2", "--restarts", "1", "--format", fmt, "--out", str(out)]) == 0
    for figure in ("hmm_selection", "hmm_graph", "hmm_curves"):
        assert_opens(out / f"{figure}.{fmt}")


def test_zscore_per_run_reaches_the_fit(tmp_path):
    regimes = with_detour(n_runs=5, n_evals=20)
    assert main(["hmm", write_runs(tmp_path, regimes), "--restarts", "2", "--zscore", "per_run",
                 "--out", str(tmp_path / "out")]) == 0
    table, frames = regime_runs(regimes)
    expected = training_map(table, frames, Settings(restarts=2, zscore="per_run"))[0]
    written = read_csv(tmp_path / "out" / "hmm_selection.csv")
    assert written["bic"].to_numpy() == pytest.approx(expected["bic"].to_numpy(), rel=1e-9)
    global_ = training_map(table, frames, Settings(restarts=2))[0]
    assert not np.allclose(global_["bic"], expected["bic"])


def test_a_sweep_where_every_count_fails_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(analysis.hmm, "fit_hmm", lambda *args: None)
    out = tmp_path / "out"
    assert main(["hmm", write_runs(tmp_path, with_detour(n_runs=5, n_evals=30)), "--out", str(out)]) == 2
    assert_one_line(capsys.readouterr().err, "no state count could be fitted", "1..3 states")
    assert not out.exists()


def test_the_command_on_tiny_multi_seed_training_runs(qf_dir, tmp_path, capsys):
    assert train(qf_dir, *TINY_QF_RUN, "--seeds", "1,2,3,4,5", "--max_train_steps", "28", "--eval_every", "2",
                 "--save_dir", str(tmp_path), "--save_prefix", "tiny") == 0
    out = tmp_path / "analysis"
    assert main(["hmm", str(tmp_path / "tiny_seed*"), "--metric", "val_aux", "--restarts", "2", "--out", str(out)]) == 0
    states = read_csv(out / "hmm_states.csv")
    assert sorted(states["seed"].unique()) == [1, 2, 3, 4, 5]
    assert (states.groupby("run")["step"].apply(list) == [list(range(0, 29, 2))] * 5).all()
    transitions = read_csv(out / "hmm_transitions.csv")
    assert transitions.groupby("from_state")["probability"].sum().to_numpy() == pytest.approx(1)
    assert transitions["count"].sum() == 5 * 14
    printed = capsys.readouterr().out
    # 4 fit runs x 15 evaluations: parameters for 2 states (59), not 3 (92)
    assert "note: the data capped the state counts at 2 (--max_states 8)" in printed
    assert read_csv(out / "hmm_selection.csv")["n_states"].tolist() == [1, 2]
    assert "wrote hmm_selection.csv" in printed


@pytest.mark.parametrize("n_runs, n_evals, stats, flags, fragments", [
    (4, 20, True, [], ["at least 5 runs", "got 4"]),
    (6, 20, False, [], ["run run0 never logged the weight statistics", "--no_weight_stats"]),
    (6, 20, True, ["--metric", "val_aux"], ["metric val_aux was never logged by run run0"]),
    (5, 10, True, [], ["too few evaluations to fit 2 states", "the 4 fit runs hold 40", "59 parameters"]),
    (6, 20, True, ["--zscore", "within"], ["--zscore", "invalid choice: 'within'"]),
    (6, 20, True, ["--restarts", "0"], ["--restarts must be at least 1"]),
    (6, 20, True, ["--seed", "-1"], ["--seed must be between 0 and 4294967295"]),
])
def test_bad_input_is_refused_in_one_line(tmp_path, capsys, n_runs, n_evals, stats, flags, fragments):
    runs = write_runs(tmp_path, with_detour(n_runs=n_runs, n_evals=n_evals), stats)
    out = tmp_path / "out"
    assert main(["hmm", runs, *flags, "--out", str(out)]) == 2
    assert_one_line(capsys.readouterr().err, *fragments)
    assert not out.exists()
