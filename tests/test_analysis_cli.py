"""`python -m analysis dynamics` and `python plot.py` end to end on real tiny runs, and bad input."""
from __future__ import annotations

import os

import pandas as pd
import pytest

import plot
from analysis.__main__ import main as analysis
from helpers import ARGS, assert_one_line, evals, read_csv, run_python, write_run

RUNS_COLUMNS = ["run", "condition", "seed", "last_step", "end_test_aux", "end_hierarchical", "end_linear",
                "tv_full", "tv_late_per_10k", "oscillations", "commitment", "stable", "end_seen_acc",
                "end_unseen_acc"]
CONDITIONS_COLUMNS = ["condition", "n_runs", "p_hierarchical", "p_linear", "p_uncommitted", "mean_end_test_aux",
                      "mean_end_hierarchical_runs", "dip", "dip_p", "bic_1", "bic_2", "bimodal", "regime",
                      "p_hierarchical_lo", "p_hierarchical_hi", "p_linear_lo", "p_linear_hi", "p_uncommitted_lo",
                      "p_uncommitted_hi", "mean_end_test_aux_lo", "mean_end_test_aux_hi"]
COMPARISONS_COLUMNS = ["condition_a", "condition_b", "n_a", "n_b", "median_end_test_aux_a", "median_end_test_aux_b",
                       "U", "p", "rank_biserial"]
OUTPUTS = ["comparisons.csv", "conditions.csv", "outcomes.png", "runs.csv", "trajectories.png"]


@pytest.mark.slow
def test_dynamics_writes_every_table_and_figure(sweep, tiny_data, tmp_path, capsys):
    out = tmp_path / "analysis"
    assert analysis(["dynamics", os.path.join(sweep, "*"), "--data_dir", tiny_data, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == OUTPUTS
    for name in ("trajectories.png", "outcomes.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs, conditions = read_csv(out / "runs.csv"), read_csv(out / "conditions.csv")
    assert list(runs.columns) == RUNS_COLUMNS and list(conditions.columns) == CONDITIONS_COLUMNS
    comparisons = read_csv(out / "comparisons.csv")
    assert list(comparisons.columns) == COMPARISONS_COLUMNS
    assert comparisons[["condition_a", "condition_b", "n_a", "n_b"]].values.tolist() == [
        ["dataset=question", "dataset=question_D20", 4, 4]]
    assert conditions["condition"].tolist() == ["dataset=question", "dataset=question_D20"]
    assert conditions["n_runs"].tolist() == [4, 4]
    assert runs["seed"].tolist() == [1, 2, 3, 4] * 2 and set(runs["last_step"]) == {40}
    # QF's hierarchical share is the test accuracy; every run has a commitment and a stability.
    assert (runs["end_hierarchical"] - runs["end_test_aux"]).abs().max() < 1e-12
    assert runs["commitment"].notna().all() and runs["stable"].notna().all()
    assert (conditions[["p_hierarchical", "p_linear", "p_uncommitted"]].sum(axis=1) == 1).all()
    assert conditions["dip"].notna().all() and conditions["regime"].notna().all()
    # question_D20 trained on bare subjects only: every test type is unseen, so the unseen
    # accuracy is the whole test accuracy (line-weighted) and the seen one is empty.
    d20 = runs[runs["condition"] == "dataset=question_D20"]
    assert d20["end_seen_acc"].isna().all()
    assert (d20["end_unseen_acc"] - d20["end_test_aux"]).abs().max() < 1e-9
    full = runs[runs["condition"] == "dataset=question"]
    assert full["end_seen_acc"].notna().all()
    summary = capsys.readouterr().out
    assert "dataset=question_D20" in summary and "regime" in summary
    assert "dataset=question d" in summary and "from dataset=question_D20, p = " in summary


@pytest.mark.slow
def test_rerunning_replaces_its_outputs_and_touches_nothing_else(sweep, tmp_path):
    out = tmp_path / "analysis"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = {name: os.listdir(os.path.join(sweep, name)) for name in os.listdir(sweep)}
    for _ in range(2):
        assert analysis(["dynamics", os.path.join(sweep, "question_seed*"), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == sorted(OUTPUTS + ["notes.txt"]) and (out / "notes.txt").read_text() == "mine"
    assert {name: os.listdir(os.path.join(sweep, name)) for name in os.listdir(sweep)} == before
    # Without --data_dir, the data folder each args.json names is read.
    runs = read_csv(out / "runs.csv")
    assert len(runs) == 4 and runs["end_seen_acc"].notna().all()


@pytest.mark.slow
def test_plot_draws_runs_with_no_other_flag(sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert plot.main([os.path.join(sweep, "*")]) == 0
    assert (tmp_path / "analysis" / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert plot.main([os.path.join(sweep, "*"), "--metric", "test_aux", "--metric", "val_aux",
                      "--out", "figs/two.png"]) == 0
    assert (tmp_path / "figs" / "two.png").exists()


@pytest.mark.slow
def test_plot_per_run_draws_each_runs_rule_shares_and_types(sweep, tiny_data, tmp_path, capsys):
    runs = [os.path.join(sweep, "question_seed1"), os.path.join(sweep, "question_D20_seed2")]
    assert plot.main([*runs, "--per_run", "--data_dir", tiny_data, "--out", str(tmp_path)]) == 0
    assert sorted(os.listdir(tmp_path)) == ["question_D20_seed2_run.png", "question_seed1_run.png"]
    assert plot.main([*runs, "--per_run", "--metric", "val_aux", "--out", str(tmp_path / "x")]) == 2
    assert "--metric does not apply to --per_run" in capsys.readouterr().err


def test_the_type_heatmap_lists_seen_types_first_then_by_final_accuracy():
    types = [f"det n_s {k}" for k in ("a", "b", "c")]
    frame = pd.DataFrame({"test_aux": [0.2, 0.6], "test_hierarchical": [0.2, 0.6], "test_linear": [0.7, 0.3]},
                         index=[0, 1000])
    accuracy = pd.DataFrame({types[0]: [0.1, 0.2], types[1]: [0.5, 0.9], types[2]: [0.3, 0.4]}, index=frame.index)
    fig = plot.run_view(frame, accuracy, "run", pd.Series({types[0]: True, types[1]: False, types[2]: True}))
    labels = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert labels == ["det n_s c  [seen]", "det n_s a  [seen]", "det n_s b"]
    top = fig.axes[0].get_legend_handles_labels()[1]
    assert top == ["test_hierarchical (share of lines)", "test_linear (share of lines)", "test_aux (accuracy)"]


def bad_input_cases(tmp_path):
    good = write_run(tmp_path / "good", ARGS, evals([0, 10], [0.1, 0.2]))
    no_metrics = write_run(tmp_path / "research", ARGS, None)
    latin1 = write_run(tmp_path / "latin1", ARGS, evals([0, 10], [0.1, 0.2]))
    open(os.path.join(latin1, "args.json"), "wb").write(b'{"dataset": "qu\xe9stion"}')
    return {
        "args.json not UTF-8": ([latin1], "args.json is not valid JSON"),
        "no runs": ([str(tmp_path / "empty*")], "no such run directory"),
        "no run folder": ([str(tmp_path / "good" / "..")], "no run directory"),
        "no metrics.jsonl": ([good, no_metrics], "has no metrics.jsonl"),
        "metric never logged": ([good, "--metric", "test_agree_subject"], "never logged"),
    }


@pytest.mark.parametrize("case", ["no runs", "no run folder", "no metrics.jsonl", "metric never logged",
                                  "args.json not UTF-8"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, case):
    argv, message = bad_input_cases(tmp_path)[case]
    out = tmp_path / "out"
    assert analysis(["dynamics", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert_one_line(err, message)
    assert not out.exists()
    figure = tmp_path / "fig.png"
    assert plot.main([*argv, "--out", str(figure)]) == 2
    assert_one_line(capsys.readouterr().err)
    assert not figure.exists()


def test_outputs_that_cannot_be_written_are_refused_before_reading(tmp_path, capsys):
    run = write_run(tmp_path / "good", ARGS, evals([0, 10], [0.1, 0.2]))
    (tmp_path / "file").write_text("mine")
    for command, message in [(lambda: analysis(["dynamics", run, "--out", str(tmp_path / "file")]), "is a file"),
                             (lambda: analysis(["dynamics", run, "--out", "/proc/hier_gen"]), "cannot be created"),
                             (lambda: plot.main([run, "--out", str(tmp_path)]), "is a folder"),
                             (lambda: plot.main([run, "--out", str(tmp_path / "file" / "fig.png")]), "is a file"),
                             (lambda: plot.main([run, "--per_run", "--out", str(tmp_path / "file")]), "is a file")]:
        code, err = command(), capsys.readouterr().err
        assert code == 2 and err.startswith("error: --out "), err
        assert_one_line(err, message)
    assert sorted(os.listdir(tmp_path)) == ["file", "good"] and (tmp_path / "file").read_text() == "mine"


def test_the_command_line_prints_one_line_without_traceback(tmp_path, capsys):
    for argv in (["-m", "analysis", "dynamics", str(tmp_path / "none")], ["plot.py", str(tmp_path / "none")]):
        result = run_python(*argv)
        assert result.returncode == 2 and result.stderr.startswith("error: ")
        assert_one_line(result.stderr)
    assert os.listdir(tmp_path) == []
    assert analysis([]) == 2 and "COMMAND" in capsys.readouterr().err
