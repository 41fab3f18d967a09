"""Figures of runs: every matplotlib call of the project lives here (Agg backend, no display needed).

    python plot.py RUN... [--metric test_aux --metric val_aux ...] [--out analysis/plot.png]

draws each metric's trajectories, one panel per condition: every seed as a thin translucent line,
the median across seeds and the interquartile band on top; steps in thousands.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.patheffects as pe  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from analysis.cli import Parser, run  # noqa: E402
from analysis.runs import curves, find_runs  # noqa: E402
from util import atomic_open  # noqa: E402

PANELS_PER_ROW = 4
COMMITMENT_MARKERS = {"hierarchical": "^", "linear": "v", "uncommitted": "o", "unknown": "s"}
OUTLINED = [pe.Stroke(linewidth=2.6, foreground="black"), pe.Normal()]  # the median stands out of any band


def colors(conditions) -> dict[str, tuple]:
    """One colour per condition, the same in every figure of a command."""
    cmap = plt.get_cmap("tab10" if len(conditions) <= 10 else "tab20")
    return {c: cmap(i % cmap.N) for i, c in enumerate(conditions)}


def unit(metric: str) -> str | None:
    """The unit of a logged metric, where it is known."""
    if "ppl" in metric or metric == "loss":
        return "cross-entropy, nats/token"
    if metric.endswith("_aux") or "_aux_type/" in metric:
        return "accuracy"
    return "share of lines" if metric.startswith("test_") else None


def axis_label(metric: str) -> str:
    return f"{metric} ({unit(metric)})" if unit(metric) else metric


def trajectories(curves: pd.DataFrame) -> plt.Figure:
    """Panels metric x condition from the long table of analysis.runs.curves."""
    conditions = list(curves["condition"].cat.categories)
    metrics = list(dict.fromkeys(curves["metric"]))
    palette = colors(conditions)
    panels = [(m, c) for m in metrics for c in conditions]
    ncols = min(len(conditions), PANELS_PER_ROW)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols, 3.0 * nrows), squeeze=False, sharex=True)
    first_of_metric: dict[str, plt.Axes] = {}
    for ax, (metric, condition) in zip(axes.flat, panels):
        if metric in first_of_metric:
            ax.sharey(first_of_metric[metric])
        first_of_metric.setdefault(metric, ax)
        rows = curves[(curves["metric"] == metric) & (curves["condition"] == condition)]
        _draw_seeds(ax, rows, palette[condition])
        ax.set_title(textwrap.fill(condition, 45), fontsize=9)
        ax.set_xlabel("step (thousands)")
        ax.set_ylabel(axis_label(metric), fontsize=8)
        ax.xaxis.set_tick_params(labelbottom=True)
        if unit(metric) in ("accuracy", "share of lines"):
            ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def _draw_seeds(ax: plt.Axes, rows: pd.DataFrame, color) -> None:
    """Thin translucent seed lines, then the median and the interquartile band above them."""
    n_seeds = rows["run"].nunique()
    # Fainter lines as seeds multiply, so that 50 of them still show where most runs are.
    alpha = min(0.8, max(0.12, 4 / n_seeds))
    # One collection for all seed lines: drawing 50 separate lines per panel is much slower.
    lines = [np.column_stack([g["step"].to_numpy(float) / 1000, g["value"].to_numpy(float)])
             for _, g in rows.groupby("run", sort=False)]
    ax.add_collection(LineCollection(lines, colors=[color], linewidths=0.6, alpha=alpha))
    q = rows.groupby("step")["value"].quantile([0.25, 0.5, 0.75]).unstack()
    x = q.index.to_numpy(float) / 1000
    ax.fill_between(x, q[0.25], q[0.75], color=color, alpha=0.3, lw=0)
    ax.plot(x, q[0.5], color=color, lw=1.6, path_effects=OUTLINED)
    ax.legend(handles=[Line2D([], [], color=color, lw=0.6, alpha=max(alpha, 0.5), label=f"seeds (n={n_seeds})"),
                       Line2D([], [], color=color, lw=1.6, path_effects=OUTLINED, label="median"),
                       Patch(color=color, alpha=0.3, label="interquartile range")],
              fontsize=7, loc="best")


def outcomes(runs: pd.DataFrame, metric: str = "test_aux", end_evals: int = 5) -> plt.Figure:
    """End values per condition (rows of runs.csv): one dot per seed, its shape its commitment."""
    conditions = list(runs["condition"].cat.categories)
    palette = colors(conditions)
    rng = np.random.default_rng(0)  # fixed jitter: reruns draw the same figure
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(conditions) + 2), 4.0))
    commitments = runs["commitment"].fillna("unknown")  # runs that logged no rule shares
    for i, condition in enumerate(conditions):
        pick = (runs["condition"] == condition).to_numpy()
        ends, kinds = runs.loc[pick, f"end_{metric}"].to_numpy(float), commitments[pick].to_numpy()
        x = i + rng.uniform(-0.18, 0.18, len(ends))
        for kind, marker in COMMITMENT_MARKERS.items():
            ax.scatter(x[kinds == kind], ends[kinds == kind], color=palette[condition], marker=marker,
                       s=26, alpha=0.8, edgecolor="black", linewidth=0.3)
        ax.hlines(np.median(ends), i - 0.3, i + 0.3, color="black", lw=1.5)
    ax.set_xticks(range(len(conditions)), [textwrap.fill(c, 22) for c in conditions], fontsize=8,
                  rotation=20 if len(conditions) > 4 else 0)
    ax.set_xlim(-0.6, len(conditions) - 0.4)
    ax.set_xlabel("condition")
    if unit(metric) in ("accuracy", "share of lines"):
        ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(f"end {axis_label(metric)}\n(mean of the last {end_evals} evaluations)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    handles = [Line2D([], [], ls="", marker=m, color="grey", markeredgecolor="black", label=kind)
               for kind, m in COMMITMENT_MARKERS.items() if (commitments == kind).any()]
    handles.append(Line2D([], [], color="black", lw=1.5, label="median"))
    ax.legend(handles=handles, title="seeds by commitment", title_fontsize=8, fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, path: str) -> None:
    """Write a PNG atomically and free the figure."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description="Plot metric trajectories of runs, one panel per condition and metric.")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories or globs of them")
    parser.add_argument("--metric", action="append", help="metric to plot (repeatable; default test_aux)")
    parser.add_argument("--out", default=os.path.join("analysis", "plot.png"),
                        help="output PNG (default: ./analysis/plot.png)")

    def command():
        args = parser.parse_args(argv)
        table = curves(find_runs(args.runs), args.metric or ["test_aux"])
        save(trajectories(table), args.out)
        print(f"wrote {args.out}")

    return run(command)


if __name__ == "__main__":
    sys.exit(main())
