"""plot.py as a library: it imports nothing of the project but util, its figures compose into one
figure, and every figure is written as PNG, PDF (TrueType fonts) and SVG."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import plot
from analysis.__main__ import main as analysis
from helpers import ARGS, REPO, assert_one_line, assert_opens, evals, write_run


def test_importing_plot_loads_no_torch_and_no_project_module_but_util():
    project = {os.path.splitext(name)[0] for name in os.listdir(REPO)} - {"plot", "util"}
    code = ("import sys, plot; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.split())
    assert "matplotlib" in loaded and "util" in loaded
    assert not loaded & (project | {"torch", "sklearn", "scipy", "hmmlearn"})


# ---- one small input per figure function ----

STEPS = [0, 500, 1000, 1500, 2000]


def conditions(names: list[str]) -> pd.Categorical:
    return pd.Categorical(names, categories=sorted(set(names)), ordered=True)


def curves() -> pd.DataFrame:
    rows = [{"metric": m, "condition": c, "run": f"{c}_seed{s}", "step": step, "value": (s + k) / 10}
            for m in ("test_aux", "val_aux") for c in ("dataset=question", "dataset=question_D50")
            for s in range(3) for k, step in enumerate(STEPS)]
    table = pd.DataFrame(rows)
    table["condition"] = conditions(list(table["condition"]))
    return table


def runs() -> pd.DataFrame:
    names = ["dataset=question"] * 3 + ["dataset=question_D50"] * 3
    return pd.DataFrame({"condition": conditions(names), "end_test_aux": [0.1, 0.9, 0.95, 0.2, 0.3, 0.5],
                         "commitment": ["linear", "hierarchical", "hierarchical", "linear", None, "uncommitted"]})


def checkpoint_table() -> pd.DataFrame:
    return pd.DataFrame({"step": STEPS, "val_aux": [0.2, 0.6, 0.9, 1.0, 1.0], "test_aux": [0.1, 0.2, 0.3, 0.2, 0.3],
                         "val_full_seq": [0.0, 0.3, 0.7, 0.9, 1.0], "test_full_seq": [0.0, 0.0, 0.1, 0.0, 0.0],
                         "weight_norm": [38.0, 40, 41, 43, 43.5], "attn_entropy_layer1": [1.9, 1.5, 1.3, 1.3, 1.3],
                         "attn_entropy_layer2": [1.9, 1.0, 0.8, 0.7, 0.7],
                         "attn_entropy_mean": [1.9, 1.25, 1.05, 1.0, 1.0], "t_score": [0.2, 0.6, 0.4, 0.5, 0.6],
                         "t_parseval": [0.3, 0.5, 0.45, 0.5, 0.5], "right_branching_f1": 0.667, "n_sentences": 40})


def probe_table() -> pd.DataFrame:
    rows = [{"step": step, "layer": layer, "label": "pos", "test_acc": 0.5 + layer / 10, "control_acc": 0.3,
             "majority_acc": 0.2} for step in STEPS for layer in range(3)]
    return pd.DataFrame(rows)


def hmm_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    moves = [(0, 0, 0.9, 40), (0, 1, 0.1, 5), (1, 1, 0.8, 30), (1, 2, 0.15, 4), (1, 0, 0.05, 1), (2, 2, 1.0, 50)]
    transitions = pd.DataFrame(moves, columns=["from_state", "to_state", "probability", "count"])
    detours = pd.DataFrame({"state": [0, 1, 2], "n_runs_visiting": [5, 3, 5], "obligatory": [True, False, True],
                            "detour": [False, True, False]})
    states = pd.DataFrame([{"metric": m, "run": f"r{r}", "step": step, "value": r + k / 4, "state": min(k // 2, 2)}
                           for m in ("test_aux", "weights/l1") for r in range(5) for k, step in enumerate(STEPS)])
    return transitions, detours, states


def head_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """heads.csv, heads_ablation.csv (with `moved`), heads_top.csv and heads_subspace.csv of 2 layers x 2 heads."""
    cells = [(step, layer, head) for step in STEPS for layer in (1, 2) for head in (1, 2)]
    attention = pd.DataFrame([{"step": s, "layer": l, "head": h, "mass_main": 0.1 * l, "mass_first": 0.2 * h,
                               "mass_other": 1 - 0.1 * l - 0.2 * h, "n_lines": 40} for s, l, h in cells])
    ablation = pd.DataFrame([{"step": s, "layer": l, "head": h, "hierarchical": 0.3, "linear": 0.6 - 0.1 * h,
                              "other": 0.1 + 0.1 * h, "moved": 0.1 * h} for s, l, h in cells]
                            + [{"step": s, "layer": -1, "head": -1, "hierarchical": 0.3, "linear": 0.6, "other": 0.1,
                                "moved": 0.0} for s in STEPS]).sort_values("step", kind="stable")
    top = pd.DataFrame([{"step": s, "rank": r, "layer": r, "head": 2, "hierarchical": 0.2, "linear": 0.5 - 0.1 * r,
                         "other": 0.3 + 0.1 * r} for s in STEPS for r in (1, 2)])
    subspace = pd.DataFrame([{"step": s, "layer": l, "pr_states": 2 + l, "pr_between": 1 + l / 2}
                             for s in STEPS for l in range(3)])
    return attention, ablation, top, subspace


def selection() -> pd.DataFrame:
    """hmm_selection.csv of 4 state counts, the third failed."""
    return pd.DataFrame({"n_states": [1, 2, 3, 4], "heldout_loglik_mean": [-20.0, -15, np.nan, -14],
                         "heldout_loglik_sd": [0.0, 1.0, np.nan, np.nan], "aic_mean_restarts": [900.0, 800, np.nan, 790],
                         "bic_mean_restarts": [950.0, 870, np.nan, 900], "bic": [950.0, 860, np.nan, 880],
                         "failed": [False, False, True, False], "selected": [False, True, False, False]})


def type_view() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    frame = pd.DataFrame({"test_aux": [0.2, 0.6], "test_hierarchical": [0.2, 0.6], "test_linear": [0.7, 0.3]},
                         index=[0, 1000])
    accuracy = pd.DataFrame({"det n_s": [0.1, 0.9], "det n_p": [0.4, 0.5]}, index=frame.index)
    return frame, accuracy, pd.Series({"det n_s": True, "det n_p": False})


def prediction_table() -> pd.DataFrame:
    rows = [{"cv": cv, "cutoff": cutoff, "features": name, "n_runs": 20, "balanced_accuracy": 0.5 + cutoff * k / 6,
             "permuted_balanced_accuracy": 0.5, "r2": cutoff * k / 6 - 0.1, "permuted_r2": -0.1}
            for cv in ("runs", "conditions") for cutoff in (0.01, 0.02, 0.05, 0.1, 0.5, 0.9)
            for k, name in enumerate(["majority", "current", "history", "weights"])]
    return pd.DataFrame(rows)


FIGURES = {
    "trajectories": lambda: plot.trajectories(curves()),
    "metric_panels": lambda: plot.metric_panels(curves()),
    "outcomes": lambda: plot.outcomes(runs()),
    "run_view": lambda: plot.run_view(*type_view()[:2], "run", type_view()[2]),
    "checkpoint_accuracies": lambda: plot.checkpoint_accuracies(checkpoint_table(), ["val_aux", "val_full_seq",
                                                                                     "test_aux"], "run"),
    "weights_and_attention": lambda: plot.weights_and_attention(checkpoint_table(), "run"),
    "tree_scores": lambda: plot.tree_scores(checkpoint_table(), "run"),
    "probe_heatmap": lambda: plot.probe_heatmap(probe_table(), "pos"),
    "head_attention": lambda: plot.head_attention(head_tables()[0], ("main auxiliary", "first auxiliary"), "run"),
    "head_ablation": lambda: plot.head_ablation(*head_tables()[1:3], "mean", "run"),
    "head_subspace": lambda: plot.head_subspace(head_tables()[3], "run"),
    "hmm_graph": lambda: plot.hmm_graph(*hmm_tables()[:2], n_runs=5),
    "hmm_curves": lambda: plot.hmm_curves(hmm_tables()[2]),
    "hmm_selection": lambda: plot.hmm_selection(selection()),
    "prediction_scores": lambda: plot.prediction_scores(prediction_table(), ["majority", "current"]),
}


def figure_functions() -> set[str]:
    """plot's public functions that draw into an `ax` or a `fig`."""
    return {name for name, f in inspect.getmembers(plot, inspect.isfunction)
            if not name.startswith("_") and {"ax", "fig"} & set(inspect.signature(f).parameters)}


def test_every_figure_function_has_a_case_here():
    assert figure_functions() == set(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_is_written_as_png_pdf_and_svg(tmp_path, name):
    for fmt in plot.FORMATS:
        path = tmp_path / f"{name}.{fmt}"
        plot.save(FIGURES[name](), str(path))
        assert_opens(path)
    assert sorted(os.listdir(tmp_path)) == [f"{name}.{fmt}" for fmt in sorted(plot.FORMATS)]
    assert plt.get_fignums() == []  # saving frees the figure


def test_a_rerun_writes_the_same_pdf_and_svg(tmp_path):
    for fmt in ("pdf", "svg"):
        first, second = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
        plot.save(plot.outcomes(runs()), str(first))
        plot.save(plot.outcomes(runs()), str(second))
        assert first.read_bytes() == second.read_bytes()


def test_png_resolution_follows_dpi(tmp_path):
    plot.save(plot.outcomes(runs()), str(tmp_path / "low.png"), dpi=50)
    plot.save(plot.outcomes(runs()), str(tmp_path / "high.png"), dpi=100)
    low, high = plt.imread(tmp_path / "low.png"), plt.imread(tmp_path / "high.png")
    assert high.shape[0] == pytest.approx(2 * low.shape[0], abs=2)


def test_figures_compose_into_panels_of_one_figure(tmp_path):
    fig = plt.figure(figsize=(14, 7), layout="constrained")
    left, right = fig.subfigures(1, 2)
    ax = plot.outcomes(runs(), ax=left.subplots())
    drawn = plot.weights_and_attention(checkpoint_table(), "run", fig=right)
    assert drawn is right and ax.get_figure(root=True) is fig
    assert len(fig.get_axes()) == 3 and ax.get_ylabel().startswith("end test_aux")
    assert plt.get_fignums() == [fig.number]  # no figure of their own
    plot.save(fig, str(tmp_path / "panels.pdf"))
    assert_opens(tmp_path / "panels.pdf")


def test_an_unknown_figure_format_is_refused_in_one_line(tmp_path):
    with pytest.raises(plot.HierGenError, match=r"fig.jpg: figures are written as .png, .pdf, .svg"):
        plot.save(plot.outcomes(runs()), str(tmp_path / "fig.jpg"))
    assert os.listdir(tmp_path) == []


def synthetic_sweep(folder) -> str:
    for seed in range(1, 5):
        values = np.linspace(0, seed / 4, 12)
        write_run(folder / f"seed{seed}", {**ARGS, "seed": seed}, evals(range(0, 1200, 100), values))
    return str(folder / "seed*")


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_analysis_commands_write_their_figures_in_the_format_asked(tmp_path, capsys, fmt):
    sweep, out = synthetic_sweep(tmp_path / "runs"), tmp_path / "out"
    assert analysis(["dynamics", sweep, "--out", str(out), "--format", fmt]) == 0
    assert sorted(os.listdir(out)) == sorted(["runs.csv", "conditions.csv", "comparisons.csv", f"trajectories.{fmt}",
                                              f"outcomes.{fmt}"])
    for name in (f"trajectories.{fmt}", f"outcomes.{fmt}"):
        assert_opens(out / name)
    assert f"wrote runs.csv, conditions.csv, comparisons.csv, trajectories.{fmt}, outcomes.{fmt} to {out}" in capsys.readouterr().out
    figure = tmp_path / f"plot.{fmt}"
    assert plot.main([sweep, "--out", str(figure)]) == 0
    assert_opens(figure)
    assert plot.main([sweep, "--per_run", "--format", fmt, "--out", str(tmp_path / "per_run")]) == 0
    assert sorted(os.listdir(tmp_path / "per_run")) == [f"seed{seed}_run.{fmt}" for seed in range(1, 5)]
    assert_opens(tmp_path / "per_run" / f"seed1_run.{fmt}")


@pytest.mark.parametrize("argv, message", [
    (["--format", "jpg"], "argument --format: invalid choice: 'jpg'"),
    (["--dpi", "0"], "--dpi must be at least 1 (got 0)"),
])
def test_bad_figure_flags_are_refused_in_one_line(tmp_path, capsys, argv, message):
    sweep = synthetic_sweep(tmp_path / "runs")
    assert analysis(["dynamics", sweep, "--out", str(tmp_path / "out"), *argv]) == 2
    assert_one_line(capsys.readouterr().err, message)
    assert not (tmp_path / "out").exists()
    assert plot.main([sweep, "--out", str(tmp_path / "fig.jpg")]) == 2
    assert_one_line(capsys.readouterr().err, "figures are written as .png, .pdf, .svg")
