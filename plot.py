"""Every figure of the project: matplotlib only, drawing the data it is given (Agg backend, no display).

Each figure function takes the data it draws (DataFrames and column names) and, like seaborn's,
either an `ax=` to draw into (single-panel figures) or a `fig=` (a Figure or a SubFigure, for
multi-panel ones), making its own when none is given; it returns what it drew. So panels compose:

    fig = plt.figure(figsize=(12, 4), layout="constrained")
    left, right = fig.subfigures(1, 2)
    plot.outcomes(runs, ax=left.subplots())
    plot.checkpoint_accuracies(table, ["val_aux", "test_aux"], "run", ax=right.subplots())
    plot.save(fig, "figure.pdf")

`save` writes PNG, PDF or SVG by the path's extension (PDF with TrueType fonts embedded). STYLE
below is the one place for sizes and fonts; `colors` gives conditions their colours.

The command line reads run directories and draws them (`python plot.py RUN...`); importing this
module loads matplotlib, NumPy and pandas only.

    python plot.py RUN... [--metric test_aux --metric val_aux ...] [--out analysis/plot.png]
    python plot.py RUN... --per_run [--out analysis/] [--format png|pdf|svg]

The first draws one panel per metric: every seed as a thin translucent line in its condition's
colour, the condition's median across seeds and its interquartile band on top; steps in
thousands. The second draws, for each run, the shares of each rule's answer over training and
its accuracy per sentence type (type x step heatmap), into `{out}/{run}_run.{format}`.
"""
from __future__ import annotations

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
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import FigureBase  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from util import HierGenError, Parser, atomic_open, check_folder_can_be_made, run_command  # noqa: E402

# ---- style: sizes, fonts, colours ----

STYLE = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8, "legend.title_fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "grid.alpha": 0.3,
    "pdf.fonttype": 42,        # TrueType fonts in PDFs: journals refuse Type 3
    "svg.fonttype": "path",    # text as outlines: an SVG looks the same without the font installed
    "svg.hashsalt": "hier_gen",  # the same ids on every run: reruns write the same SVG
}
SMALL = 7  # annotations inside cells and along arrows
DPI = 130  # PNGs; `--dpi` changes it
FORMATS = ("png", "pdf", "svg")
PANELS_PER_ROW = 4
COMMITMENT_MARKERS = {"hierarchical": "^", "linear": "v", "uncommitted": "o", "unknown": "s"}
# The shares of each rule's answer on the generalization lines (QF, then TI): hierarchical green,
# linear red, neither grey.
RULE_COLORS = {"test_hierarchical": "tab:green", "test_agree_subject": "tab:green",
               "test_linear": "tab:red", "test_agree_recent": "tab:red", "test_other": "tab:gray"}
OUTLINED = [pe.Stroke(linewidth=2.6, foreground="black"), pe.Normal()]  # the median stands out of any band
styled = matplotlib.rc_context(STYLE)  # a decorator: each figure function draws in the style


def colors(conditions) -> dict[str, tuple]:
    """One colour per condition, the same in every figure of a command."""
    cmap = plt.get_cmap("tab10" if len(conditions) <= 10 else "tab20")
    return {c: cmap(i % cmap.N) for i, c in enumerate(conditions)}


def state_colors(n_states: int) -> list[tuple]:
    """One colour per HMM state, state 0 first, the same in the graph and the curves."""
    return [plt.get_cmap("tab10")(k % 10) for k in range(n_states)]


def unit(metric: str) -> str | None:
    """The unit of a logged metric, where it is known."""
    if "ppl" in metric or metric == "loss":
        return "cross-entropy, nats/token"
    if metric.endswith("_aux") or "_aux_type/" in metric:
        return "accuracy"
    return "share of lines" if metric.startswith("test_") else None


def axis_label(metric: str) -> str:
    return f"{metric} ({unit(metric)})" if unit(metric) else metric


# ---- making and saving figures ----

def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    """The axes to draw into: the caller's, or those of a new figure of `figsize`."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _figure(fig: FigureBase | None, figsize: tuple[float, float]) -> FigureBase:
    """The (sub)figure to draw into: the caller's, or a new one of `figsize`."""
    return fig if fig is not None else plt.figure(figsize=figsize, layout="constrained")


def save(drawn: FigureBase | Axes, path: str, dpi: int = DPI) -> None:
    """Write the figure holding `drawn` atomically, as its extension says (.png at `dpi`, .pdf, .svg),
    and free it. PDFs and SVGs carry no creation date, so reruns write the same bytes."""
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise HierGenError(f"{path}: figures are written as {', '.join('.' + f for f in FORMATS)}")
    fig = drawn.get_figure(root=True)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    metadata = {"png": None, "pdf": {"CreationDate": None}, "svg": {"Date": None}}[fmt]
    with matplotlib.rc_context(STYLE), atomic_open(path, "wb") as f:
        fig.savefig(f, format=fmt, dpi=dpi, metadata=metadata)
    plt.close(fig)


def _grid(fig: FigureBase, n_panels: int, ncols: int) -> list[Axes]:
    """n_panels axes in `fig`, ncols a row, sharing x; the unused cells hidden."""
    axes = fig.subplots(math.ceil(n_panels / ncols), ncols, squeeze=False, sharex=True)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return list(axes.flat[:n_panels])


def _grid_size(n_panels: int, ncols: int, width: float, height: float) -> tuple[float, float]:
    return width * ncols, height * math.ceil(n_panels / ncols)


def _step_axis(steps: pd.Series) -> tuple[np.ndarray, str]:
    """Steps for an x axis, in thousands once a run is long enough for that to read better."""
    steps = steps.to_numpy(float)
    return (steps / 1000, "step (thousands)") if steps.max() >= 10_000 else (steps, "step")


def _accuracy_limits(ax: Axes, metric: str) -> None:
    if unit(metric) in ("accuracy", "share of lines"):
        ax.set_ylim(-0.03, 1.03)


# ---- trajectories across seeds (dynamics, plot.py) ----

@styled
def trajectories(curves: pd.DataFrame, fig: FigureBase | None = None) -> FigureBase:
    """Panels metric x condition from the long table of analysis.runs.curves (metric, condition,
    run, step, value; condition categorical)."""
    conditions = list(curves["condition"].cat.categories)
    metrics = list(dict.fromkeys(curves["metric"]))
    palette = colors(conditions)
    panels = [(m, c) for m in metrics for c in conditions]
    ncols = min(len(conditions), PANELS_PER_ROW)
    fig = _figure(fig, _grid_size(len(panels), ncols, 3.8, 3.0))
    first_of_metric: dict[str, Axes] = {}
    for ax, (metric, condition) in zip(_grid(fig, len(panels), ncols), panels):
        if metric in first_of_metric:
            ax.sharey(first_of_metric[metric])
        first_of_metric.setdefault(metric, ax)
        rows = curves[(curves["metric"] == metric) & (curves["condition"] == condition)]
        n_seeds = _draw_seeds(ax, rows, palette[condition])
        ax.legend(handles=_style_handles(palette[condition], f"seeds (n={n_seeds})"), fontsize=SMALL, loc="best")
        ax.set_title(textwrap.fill(condition, 45))
        _label_metric_axes(ax, metric)
    return fig


@styled
def metric_panels(curves: pd.DataFrame, fig: FigureBase | None = None) -> FigureBase:
    """One panel per metric, every condition in its own colour (the long table of analysis.runs.curves)."""
    conditions = list(curves["condition"].cat.categories)
    palette = colors(conditions)
    metrics = list(dict.fromkeys(curves["metric"]))
    ncols = min(len(metrics), 2)
    fig = _figure(fig, _grid_size(len(metrics), ncols, 6.0, 4.5))
    for ax, metric in zip(_grid(fig, len(metrics), ncols), metrics):
        seeds = {c: _draw_seeds(ax, rows, palette[c], shared_by=len(conditions)) for c, rows in
                 curves[curves["metric"] == metric].groupby("condition", observed=True)}
        _label_metric_axes(ax, metric)
    handles = [Patch(color=palette[c], label=f"{textwrap.shorten(c, 50)} (n={n})") for c, n in seeds.items()]
    handles += _style_handles("grey", "one seed")
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)))
    return fig


def _label_metric_axes(ax: Axes, metric: str) -> None:
    ax.set_xlabel("step (thousands)")
    ax.set_ylabel(axis_label(metric), fontsize=8)
    ax.xaxis.set_tick_params(labelbottom=True)
    _accuracy_limits(ax, metric)
    ax.grid(True)


def _draw_seeds(ax: Axes, rows: pd.DataFrame, color, shared_by: int = 1) -> int:
    """Thin translucent seed lines, then the interquartile band and the median above them (above
    every condition's lines where `shared_by` conditions share the panel); the seed count."""
    n_seeds = rows["run"].nunique()
    # Fainter lines and bands as seeds and conditions multiply, so that 50 seeds of several
    # conditions still show where most runs are.
    alpha = min(0.8, max(0.04, 4 / (n_seeds * shared_by)))
    # One collection for all seed lines: drawing 50 separate lines per panel is much slower.
    lines = [np.column_stack([g["step"].to_numpy(float) / 1000, g["value"].to_numpy(float)])
             for _, g in rows.groupby("run", sort=False)]
    ax.add_collection(LineCollection(lines, colors=[color], linewidths=0.6, alpha=alpha, zorder=1))
    q = rows.groupby("step")["value"].quantile([0.25, 0.5, 0.75]).unstack()
    x = q.index.to_numpy(float) / 1000
    ax.fill_between(x, q[0.25], q[0.75], color=color, alpha=max(0.08, 0.3 / shared_by), lw=0, zorder=2)
    ax.plot(x, q[0.5], color=color, lw=1.6, path_effects=OUTLINED, zorder=3)
    return n_seeds


def _style_handles(color, seed_label: str) -> list:
    """Legend entries for the three layers of _draw_seeds."""
    return [Line2D([], [], color=color, lw=0.6, alpha=0.6, label=seed_label),
            Line2D([], [], color=color, lw=1.6, path_effects=OUTLINED, label="median"),
            Patch(color=color, alpha=0.3, label="interquartile range")]


@styled
def outcomes(runs: pd.DataFrame, metric: str = "test_aux", end_evals: int = 5, ax: Axes | None = None) -> Axes:
    """End values per condition (rows of runs.csv): one dot per seed, its shape its commitment."""
    conditions = list(runs["condition"].cat.categories)
    palette = colors(conditions)
    rng = np.random.default_rng(0)  # fixed jitter: reruns draw the same figure
    ax = _axes(ax, (max(4.5, 1.3 * len(conditions) + 2), 4.0))
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
    _accuracy_limits(ax, metric)
    ax.set_ylabel(f"end {axis_label(metric)}\n(mean of the last {end_evals} evaluations)")
    ax.grid(True, axis="y")
    handles = [Line2D([], [], ls="", marker=m, color="grey", markeredgecolor="black", label=kind)
               for kind, m in COMMITMENT_MARKERS.items() if (commitments == kind).any()]
    handles.append(Line2D([], [], color="black", lw=1.5, label="median"))
    ax.legend(handles=handles, title="seeds by commitment", loc="best")
    return ax


# ---- one run: rule shares and accuracy per sentence type (plot.py --per_run) ----

@styled
def run_view(frame: pd.DataFrame, accuracy: pd.DataFrame, title: str, seen: pd.Series | None = None,
             fig: FigureBase | None = None) -> FigureBase:
    """One run: the shares of each rule's answer over training above its accuracy per sentence type.

    `frame` holds the run's series by step (the rule shares of RULE_COLORS and `test_aux`, where
    logged); `accuracy` its accuracy by step (rows) and sentence type (columns, named by the type's
    input tags); `seen` (type -> bool) marks the types whose input occurred in its training data.
    """
    height = max(2.0, 0.13 * accuracy.shape[1])
    fig = _figure(fig, (9, 3.2 + height))
    top, bottom = fig.subplots(2, 1, height_ratios=[3.2, height])
    x = frame.index.to_numpy(float) / 1000
    for column, color in RULE_COLORS.items():
        if column in frame:
            top.plot(x, frame[column], color=color, lw=1.4, label=f"{column} (share of lines)")
    if "test_aux" in frame:
        top.plot(x, frame["test_aux"], color="black", lw=1.0, ls="--", label="test_aux (accuracy)")
    top.set(title=title, xlabel="step (thousands)", ylabel="share / accuracy", ylim=(-0.03, 1.03))
    top.grid(True)
    top.legend(loc="best")
    if accuracy.shape[1]:
        _type_heatmap(fig, bottom, accuracy, seen)
    else:
        bottom.set_visible(False)
    return fig


def _type_heatmap(fig: FigureBase, ax: Axes, acc: pd.DataFrame, seen: pd.Series | None) -> None:
    """Types x steps of accuracy: seen types first (when known), each group by its final accuracy."""
    final = acc.ffill().iloc[-1]
    order = final.sort_values(ascending=False).index
    if seen is not None:
        order = sorted(order, key=lambda key: not seen.get(key, False))
    steps = acc.index.to_numpy(float) / 1000
    half = np.diff(steps).min() / 2 if len(steps) > 1 else 0.5  # each column centred on its evaluation
    image = ax.imshow(acc[order].to_numpy(float).T, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest", extent=(steps[0] - half, steps[-1] + half, len(order) - 0.5, -0.5))
    marked = seen is not None and seen.reindex(order).fillna(False).nunique() > 1
    labels = [key + ("  [seen]" if marked and seen.get(key, False) else "") for key in order]
    ax.set_yticks(range(len(order)), labels, fontsize=max(4.0, min(7.0, 300 / len(order))))
    ylabel = "sentence type (input tags)"
    if seen is not None and not marked:
        ylabel += "\n" + ("all" if seen.reindex(order).fillna(False).all() else "none") + " seen in training"
    ax.set(xlabel="step (thousands)", ylabel=ylabel)
    fig.colorbar(image, ax=ax, label="accuracy on the type's lines", fraction=0.04)


# ---- checkpoint analyses: checkpoints.csv, internals.csv, trees.csv, probe.csv over training ----

@styled
def checkpoint_accuracies(table: pd.DataFrame, columns: list[str], title: str, ax: Axes | None = None) -> Axes:
    """The accuracies of checkpoints.csv over training: one colour per split, the task accuracy
    (`{split}_aux`) solid, the full-sequence accuracy (`{split}_full_seq`) dashed."""
    x, xlabel = _step_axis(table["step"])
    splits = list(dict.fromkeys(c.removesuffix("_aux").removesuffix("_full_seq") for c in columns))
    palette = dict(zip(splits, plt.get_cmap("tab10").colors))
    ax = _axes(ax, (7.5, 4.2))
    for column in columns:
        full_seq = column.endswith("_full_seq")
        split = column.removesuffix("_full_seq" if full_seq else "_aux")
        ax.plot(x, table[column], color=palette[split], ls="--" if full_seq else "-", marker=".", lw=1.4,
                label=f"{column} ({'whole output exact' if full_seq else 'task token'})")
    ax.set(title=f"{title}: accuracy of each checkpoint", xlabel=xlabel, ylabel="accuracy (share of lines)",
           ylim=(-0.03, 1.03))
    ax.grid(True)
    ax.legend(loc="best")
    return ax


@styled
def weights_and_attention(table: pd.DataFrame, title: str, fig: FigureBase | None = None) -> FigureBase:
    """internals.csv over training: the weight norm, and each layer's mean attention entropy."""
    x, xlabel = _step_axis(table["step"])
    layers = [c for c in table if c.startswith("attn_entropy_layer")]
    fig = _figure(fig, (11, 4.2))
    norm, entropy = fig.subplots(1, 2)
    norm.plot(x, table["weight_norm"], color="tab:blue", marker=".", lw=1.4, label="weight_norm")
    norm.set(xlabel=xlabel, ylabel="weight norm √Σ‖p‖² (all parameters)", title="weight norm")
    norm.ticklabel_format(axis="y", useOffset=False)
    norm.legend(loc="best")
    shades = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(layers)))
    for column, color in zip(layers, shades):
        entropy.plot(x, table[column], color=color, marker=".", lw=1.2,
                     label=f"layer {column.removeprefix('attn_entropy_layer')}")
    entropy.plot(x, table["attn_entropy_mean"], color="black", lw=2.0, ls="--", label="mean over layers")
    entropy.set(xlabel=xlabel, ylabel="mean attention entropy (nats)", title="attention entropy")
    entropy.legend(loc="best", ncols=2 if len(layers) > 6 else 1)
    for ax in (norm, entropy):
        ax.grid(True)
    fig.suptitle(f"{title}: weights and attention of each checkpoint")
    return fig


@styled
def tree_scores(table: pd.DataFrame, title: str, fig: FigureBase | None = None) -> FigureBase:
    """t_score and t_parseval over training (rows of trees.csv), the right-branching tree's F1 as
    the reference a parser must beat."""
    fig = _figure(fig, (10, 3.8))
    left, right = fig.subplots(1, 2, sharex=True)
    x, xlabel = _step_axis(table["step"])
    left.plot(x, table["t_score"], color="tab:blue", marker="o", ms=3, lw=1.4, label="t_score")
    left.axhline(0, color="grey", lw=0.8, ls=":", label="random splits (0)")
    left.set(ylabel="t_score (Σ over nodes of Δ cosine,\ninduced − random split)")
    right.plot(x, table["t_parseval"], color="tab:orange", marker="o", ms=3, lw=1.4, label="t_parseval")
    right.axhline(table["right_branching_f1"].iloc[0], color="black", lw=1.0, ls="--",
                  label="right-branching tree")
    right.set(ylabel="bracket F1 against the gold trees", ylim=(-0.03, 1.03))
    for ax in (left, right):
        ax.set_xlabel(xlabel)
        ax.grid(True)
        ax.legend(loc="best")
    fig.suptitle(f"{title}: tree projections of {table['n_sentences'].iloc[0]} training declaratives")
    return fig


MAX_STEP_TICKS = 12
MAX_ANNOTATED_CELLS = 250  # beyond this, numbers in the cells are unreadable


@styled
def probe_heatmap(table: pd.DataFrame, label: str, ax: Axes | None = None) -> Axes:
    """One label's held-out probe accuracy, layer x checkpoint (rows of probe.csv), its controls in the title."""
    rows = table[table["label"] == label]
    acc = rows.pivot(index="layer", columns="step", values="test_acc").sort_index()
    n_layers, n_steps = acc.shape
    ax = _axes(ax, (max(5.0, 0.6 * n_steps + 2.8), max(3.2, 0.42 * n_layers + 1.9)))
    image = ax.imshow(acc.to_numpy(float), origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest")
    if acc.size <= MAX_ANNOTATED_CELLS:
        for (i, j), value in np.ndenumerate(acc.to_numpy(float)):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=SMALL,
                    color="white" if value < 0.6 else "black")
    ticks = np.unique(np.linspace(0, n_steps - 1, min(n_steps, MAX_STEP_TICKS)).round().astype(int))
    names = [f"{acc.columns[t]:,}" for t in ticks]
    ax.set_xticks(ticks, names, rotation=45 if sum(map(len, names)) > 40 else 0)
    ax.set_yticks(range(n_layers), ["0 (embeddings)" if layer == 0 else str(layer) for layer in acc.index])
    ax.set(xlabel="checkpoint (training step)", ylabel="layer (output of)")
    control, majority = rows["control_acc"], rows["majority_acc"].iloc[0]
    ax.set_title(f"probe '{label}': test accuracy on held-out points\n"
                 f"majority class {majority:.2f}, control task {control.min():.2f}–{control.max():.2f}")
    ax.figure.colorbar(image, ax=ax, label="test accuracy", fraction=0.05)
    return ax


# ---- attention heads (python -m analysis heads) ----

MAX_HEAD_PANELS = 12  # checkpoints drawn as layer x head panels, spread over training
MAX_ANNOTATED_HEAD_CELLS = 16  # heads per panel whose values are written in their cells


@styled
def head_attention(table: pd.DataFrame, cues: tuple[str, str], title: str, fig: FigureBase | None = None) -> FigureBase:
    """Per checkpoint (at most MAX_HEAD_PANELS, spread over training), layer x head: the decision
    position's mean attention on the hierarchical cue minus that on the linear one (rows of heads.csv)."""
    difference = table.assign(difference=table["mass_main"] - table["mass_first"])
    limit = max(0.01, float(difference["difference"].abs().max()))
    fig = _head_grid(fig, difference, "difference", "RdBu", -limit, limit,
                     f"weight on the {cues[0]}\n− weight on the {cues[1]}")
    fig.suptitle(f"{title}: the decision position's attention on the {cues[0]} (blue) and the {cues[1]} (red)\n"
                 f"mean over {table['n_lines'].iloc[0]} generalization lines", fontsize=9)
    return fig


@styled
def head_ablation(ablation: pd.DataFrame, top: pd.DataFrame, kind: str, title: str,
                  fig: FigureBase | None = None) -> FigureBase:
    """Above, the rule shares over training, unablated (solid) and with the top heads ablated together
    (dashed: all of heads_top.csv's ranks); below, per checkpoint, layer x head: the share of answers
    each head's ablation moves (`moved`, total variation from the unablated shares; rows of
    heads_ablation.csv with that column added)."""
    heads = ablation[ablation["layer"] > 0]
    n_layers, n_heads = heads["layer"].max(), heads["head"].max()
    width, height = _head_grid_size(heads["step"].nunique(), n_layers, n_heads)
    fig = _figure(fig, (max(width, 7.0), height + 3.0))
    upper, lower = fig.subfigures(2, 1, height_ratios=[3.0, height])
    ax = upper.subplots()
    clean = ablation[ablation["layer"] == -1]
    joint = top[top["rank"] == top["rank"].max()]
    for rule, color in zip(("hierarchical", "linear", "other"), ("tab:green", "tab:red", "tab:gray")):
        for rows, style, label in ((clean, "-", "unablated"), (joint, "--", f"top {top['rank'].max()} heads ablated")):
            x, xlabel = _step_axis(rows["step"])
            ax.plot(x, rows[rule], color=color, ls=style, marker=".", lw=1.4, label=f"{rule}, {label}")
    ax.set(xlabel=xlabel, ylabel="share of generalization lines", ylim=(-0.03, 1.03),
           title=f"answers by rule, unablated and with the top heads ablated together ({kind} ablation)")
    ax.grid(True)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=SMALL)
    limit = max(0.01, float(heads["moved"].max()))
    _head_grid(lower, heads, "moved", "viridis", 0, limit, "share of lines whose\nanswer changes rule", top)
    lower.suptitle(f"each head ablated alone ({kind}): the answers it moves between hierarchical, linear "
                   "and other (red boxes: the top heads)", fontsize=9)
    fig.suptitle(f"{title}: which heads the decision needs")
    return fig


@styled
def head_subspace(table: pd.DataFrame, title: str, fig: FigureBase | None = None) -> FigureBase:
    """The participation ratios of heads_subspace.csv over training, one line per layer: of the
    decision states' covariance (left) and of the between-class covariance of the hierarchical answer (right)."""
    fig = _figure(fig, (11, 4.2))
    axes = fig.subplots(1, 2, sharex=True)
    layers = sorted(table["layer"].unique())
    shades = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(layers)))
    for ax, column, what in zip(axes, ("pr_states", "pr_between"),
                                ("hidden states at the decision position",
                                 "between-class covariance of the hierarchical answer")):
        for layer, color in zip(layers, shades):
            rows = table[table["layer"] == layer]
            x, xlabel = _step_axis(rows["step"])
            ax.plot(x, rows[column], color=color, marker=".", lw=1.2,
                    label="0 (embeddings)" if layer == 0 else f"{layer}")
        ax.set(xlabel=xlabel, ylabel="participation ratio (effective dimensions)", title=what, ylim=(0, None))
        ax.grid(True)
    axes[1].legend(title="layer", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"{title}: dimensionality at the decision position, (Σλ)²/Σλ² of the covariance's eigenvalues")
    return fig


def _head_grid_size(n_steps: int, n_layers: int, n_heads: int) -> tuple[float, float]:
    n_panels = min(n_steps, MAX_HEAD_PANELS)
    return _grid_size(n_panels, min(n_panels, PANELS_PER_ROW), max(1.9, 0.3 * n_heads + 0.8),
                      max(1.5, 0.3 * n_layers + 0.8))


def _head_grid(fig: FigureBase | None, table: pd.DataFrame, column: str, cmap: str, vmin: float, vmax: float,
               label: str, marked: pd.DataFrame | None = None) -> FigureBase:
    """One layer x head heatmap of `column` per checkpoint (at most MAX_HEAD_PANELS, the first and the
    last included), a colour bar for all; the heads of `marked` (step, layer, head) outlined."""
    all_steps = sorted(table["step"].unique())
    picked = np.unique(np.linspace(0, len(all_steps) - 1, min(len(all_steps), MAX_HEAD_PANELS)).round().astype(int))
    steps = [all_steps[k] for k in picked]
    n_layers, n_heads = table["layer"].max(), table["head"].max()
    width, height = _head_grid_size(len(steps), n_layers, n_heads)
    fig = _figure(fig, (max(width + 1.5, 6.5), height + 0.8))
    axes = _grid(fig, len(steps), min(len(steps), PANELS_PER_ROW))
    for ax, step in zip(axes, steps):
        grid = table[table["step"] == step].pivot(index="layer", columns="head", values=column).sort_index()
        values = grid.to_numpy(float)
        image = ax.imshow(values, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                          interpolation="nearest")
        if values.size <= MAX_ANNOTATED_HEAD_CELLS:
            dark = (values < vmin + 0.6 * (vmax - vmin)) if cmap == "viridis" else (np.abs(values) > 0.6 * vmax)
            for (i, j), value in np.ndenumerate(values):
                ax.text(j, i, f"{value:.2f}".replace("-0.00", "0.00"), ha="center", va="center", fontsize=SMALL,
                        color="white" if dark[i, j] else "black")
        if marked is not None:
            for row in marked[marked["step"] == step].itertuples():
                ax.add_patch(plt.Rectangle((row.head - 1.5, row.layer - 1.5), 1, 1, fill=False, ec="red", lw=1.8))
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set_title(f"step {step:,}", fontsize=8)
        ax.label_outer()
    shown = "" if len(steps) == len(all_steps) else f" ({len(steps)} of {len(all_steps)} checkpoints, spread over training)"
    fig.supxlabel("head" + shown, fontsize=9)
    fig.supylabel("layer", fontsize=9)
    fig.colorbar(image, ax=axes, label=label, shrink=0.9)
    return fig


# ---- training maps (python -m analysis hmm) ----

MAX_POINTS_ALPHA = 0.9  # a state's points, made fainter as runs pile up on each other


@styled
def hmm_graph(transitions: pd.DataFrame, detours: pd.DataFrame, n_runs: int, ax: Axes | None = None) -> Axes:
    """The states left to right in their order, the probability of staying inside each, and an arrow
    for every transition the Viterbi paths make (count > 0), labelled with its fitted probability:
    forward ones above the states, backward ones below (rows of hmm_transitions and hmm_detours)."""
    n = len(detours)
    palette = state_colors(n)
    stay = transitions[transitions["from_state"] == transitions["to_state"]].set_index("from_state")["probability"]
    moves = transitions[(transitions["count"] > 0) & (transitions["from_state"] != transitions["to_state"])]
    rad = -0.35  # the same bend sends forward arrows (left to right) above and backward ones below
    # the middle of arc3's quadratic curve: half the bend times the chord, perpendicular to it
    middles = -0.5 * rad * 2.0 * (moves["to_state"] - moves["from_state"]).to_numpy(float)
    top, bottom = np.max([0.8, *(middles + 0.4)]), np.min([-0.8, *(middles - 0.4)])
    width = max(6.5, 1.9 * n + 1.0)
    # the height of the drawing, plus room for the three-line title and the legend
    ax = _axes(ax, (width, width * (top - bottom) / (2.0 * n) + 1.6))
    nodes = {}
    for row in detours.itertuples():
        nodes[row.state] = plt.Circle((row.state * 2.0, 0.0), 0.55, facecolor=palette[row.state], alpha=0.9,
                                      edgecolor="black", lw=2.4 if row.obligatory else 1.0,
                                      ls="--" if row.detour else "-", zorder=2)
        ax.add_patch(nodes[row.state])
        label = f"state {row.state}\nstay {stay[row.state]:.3f}\n{row.n_runs_visiting}/{n_runs} runs"
        ax.text(row.state * 2.0, 0.0, label, ha="center", va="center", fontsize=8, zorder=3,
                path_effects=[pe.withStroke(linewidth=2.5, foreground="white")])
    for move, middle in zip(moves.itertuples(), middles):
        a, b = nodes[move.from_state], nodes[move.to_state]
        ax.annotate("", xy=b.center, xytext=a.center, zorder=1,
                    arrowprops=dict(arrowstyle="-|>", connectionstyle=f"arc3,rad={rad}", patchA=a, patchB=b,
                                    color="dimgray", lw=0.8 + 2.2 * move.probability ** 0.5, shrinkA=1, shrinkB=1))
        ax.text((a.center[0] + b.center[0]) / 2, middle, f"{move.probability:.3f}\n({move.count}×)",
                ha="center", va="center", fontsize=SMALL, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"))
    ax.set(xlim=(-1.0, 2.0 * n - 1.0), ylim=(bottom, top), aspect="equal")
    ax.axis("off")
    ax.set_title(f"HMM states of {n_runs} runs; arrows: the transitions their Viterbi paths make,\n"
                 "labelled with the fitted probability (and how often the paths make it);\n"
                 "stay: the probability of remaining; runs: how many visit the state")
    handles = [Patch(facecolor="white", edgecolor="black", lw=2.4, label="obligatory (every run visits it)"),
               Patch(facecolor="white", edgecolor="black", lw=1.0, ls="--",
                     label="detour (its visitors converge later, p < 0.05)"),
               Patch(facecolor="white", edgecolor="black", lw=1.0, label="optional")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=3, fontsize=SMALL,
              frameon=False)
    return ax


@styled
def hmm_curves(curves: pd.DataFrame, zscore: str = "global", fig: FigureBase | None = None) -> FigureBase:
    """One panel per series (the convergence metric, then each weight statistic; rows of
    analysis.hmm.state_curves): each run a thin grey line, its evaluations coloured by their state.
    `zscore` says how the model standardised the statistics: over all runs (global) or per run."""
    metrics = list(dict.fromkeys(curves["metric"]))
    n_states = int(curves["state"].max()) + 1
    palette = np.array(state_colors(n_states))
    n_runs = curves["run"].nunique()
    x, xlabel = _step_axis(curves["step"])
    fig = _figure(fig, _grid_size(len(metrics) + 1, PANELS_PER_ROW, 3.6, 2.6))
    axes = _grid(fig, len(metrics) + 1, PANELS_PER_ROW)
    alpha = min(MAX_POINTS_ALPHA, max(0.3, 15 / n_runs))
    for ax, metric in zip(axes, metrics):
        pick = (curves["metric"] == metric).to_numpy()
        rows = curves[pick].assign(x=x[pick])
        lines = [g[["x", "value"]].to_numpy(float) for _, g in rows.groupby("run", sort=False)]
        ax.add_collection(LineCollection(lines, colors="grey", linewidths=0.4, alpha=min(0.6, 6 / n_runs), zorder=1))
        ax.scatter(rows["x"], rows["value"], c=palette[rows["state"].to_numpy()], s=4, lw=0, alpha=alpha, zorder=2)
        ax.autoscale_view()
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(axis_label(metric), fontsize=8)
        _accuracy_limits(ax, metric)
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.tick_params(labelsize=SMALL)
        ax.grid(True)
    legend_ax = axes[-1]
    legend_ax.axis("off")
    handles = [Line2D([], [], ls="", marker="o", color=palette[k], label=f"state {k}") for k in range(n_states)]
    handles.append(Line2D([], [], color="grey", lw=0.6, label=f"one run (n={n_runs})"))
    legend_ax.legend(handles=handles, loc="center", fontsize=9, title="Viterbi state", frameon=False)
    within = "over all runs together" if zscore == "global" else "within each run"
    fig.suptitle(f"training curves coloured by HMM state (the statistics as logged; the model reads them "
                 f"z-scored {within})", fontsize=10)
    return fig


@styled
def hmm_selection(selection: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """The choice of the number of HMM states (rows of hmm_selection.csv): the held-out log-likelihood
    per evaluation, mean and SD over the restarts, on the left axis; AIC and BIC averaged over the
    restarts and the best restart's BIC, which selects, on the right; the selected count marked. A
    failed count (every restart dropped) leaves a gap."""
    ax = _axes(ax, (7.0, 5.0))
    n = selection["n_states"]
    ax.errorbar(n, selection["heldout_loglik_mean"], yerr=selection["heldout_loglik_sd"].fillna(0.0), fmt="o-",
                color="black", capsize=3, label="held-out log-likelihood, mean ± SD over restarts")
    ax.set_xlabel("number of states")
    ax.set_ylabel("held-out log-likelihood (nats per evaluation)")
    ax.set_xticks(n)
    ax.grid(True)
    right = ax.twinx()
    right.plot(n, selection["aic_mean_restarts"], "s--", color="tab:blue", label="AIC, mean over restarts")
    right.plot(n, selection["bic_mean_restarts"], "^--", color="tab:orange", label="BIC, mean over restarts")
    right.plot(n, selection["bic"], "^-", color="tab:red", label="BIC of the best restart (selects)")
    right.set_ylabel("AIC, BIC of the held-out runs (nats)")
    chosen = int(n[selection["selected"]].iloc[0])
    ax.axvline(chosen, color="grey", ls=":", lw=2, label=f"selected: {chosen} states")
    failed = ", ".join(str(k) for k in n[selection["failed"]])
    ax.set_title("choosing the number of HMM states: the held-out runs' fit"
                 + (f"\nno fit of {failed} states (every restart failed)" if failed else ""))
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = right.get_legend_handles_labels()
    # below the axes: the curves run anywhere inside them
    ax.legend(handles + more, labels + more_labels, ncols=2, loc="upper center",
              bbox_to_anchor=(0.5, -0.13), frameon=False)
    return ax


# ---- outcome prediction (python -m analysis predict) ----

# (column, its control, axis label, what an empty column means)
PREDICTION_PANELS = (("balanced_accuracy", "permuted_balanced_accuracy", "balanced accuracy of the commitment\n"
                      "(mean recall over the outcomes)", "one outcome only: nothing to tell apart"),
                     ("r2", "permuted_r2", "R² of the end value", "the end value does not vary"))
R2_FLOOR = -0.5  # R² below this (much worse than the mean) is off the chart


@styled
def prediction_scores(scores: pd.DataFrame, baselines: list[str], told: float = 0.9,
                      fig: FigureBase | None = None) -> FigureBase:
    """How well each feature set tells a run's outcome from what it logged up to each cut-off (rows of
    predict.csv): per cross-validation scheme (`cv`, a row of panels), the held-out balanced accuracy
    of the commitment and R² of the end value against the cut-off; one line per feature set, the
    `baselines` dashed, the same models on shuffled outcomes dotted grey (mean over the sets), and the
    score from which the outcome counts as told (`told`) a black line."""
    schemes = list(dict.fromkeys(scores["cv"]))
    names = list(dict.fromkeys(scores["features"]))
    palette = dict(zip(names, plt.get_cmap("tab10").colors))  # seven sets at most
    fig = _figure(fig, (10, 3.4 * len(schemes) + 0.9))
    axes = fig.subplots(len(schemes), 2, squeeze=False, sharex=True)
    for panels, scheme in zip(axes, schemes):
        rows = scores[scores["cv"] == scheme]
        for ax, (column, control, label, empty) in zip(panels, PREDICTION_PANELS):
            if rows[column].isna().all():
                ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center")
            for name in names:
                line = rows[rows["features"] == name]
                baseline = name in baselines  # dashed, above the sets that may hide them
                ax.plot(line["cutoff"] * 100, line[column], color=palette[name], marker="o", ms=3,
                        lw=1.2 if baseline else 1.6, ls="--" if baseline else "-", zorder=3 if baseline else 2)
            shuffled = rows.groupby("cutoff")[control].mean()
            ax.plot(shuffled.index * 100, shuffled, color="grey", ls=":", lw=1.4)
            _cutoff_axis(ax, rows["cutoff"].unique() * 100)
            ax.axhline(told, color="black", lw=0.8)
            ax.set(xlabel="cut-off (% of training steps, log scale)", ylabel=label,
                   title=f"held-out {scheme} ({rows['n_runs'].iloc[0]} runs)")
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.grid(True)
        panels[0].set_ylim(-0.02, 1.02)
        panels[1].set_ylim(max(R2_FLOOR, min(panels[1].get_ylim()[0], 0)), 1.02)
    handles = [Line2D([], [], color=palette[n], marker="o", ms=3, ls="--" if n in baselines else "-",
                      label=f"{n} (baseline)" if n in baselines else n) for n in names]
    handles += [Line2D([], [], color="grey", ls=":", lw=1.4, label="shuffled outcomes"),
                Line2D([], [], color="black", lw=0.8, label=f"told: {told:g}")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(5, len(handles)), title="feature set")
    return fig


def _cutoff_axis(ax: Axes, percents: np.ndarray, spacing: float = 0.12) -> None:
    """A log axis with a tick at every cut-off, labelled where it lies `spacing` decades or more below
    the next labelled one (the last always), so that 60, 70, 80, 90 do not run together."""
    ax.set_xscale("log")
    percents = np.sort(percents)
    labels, last = [], np.inf
    for p in percents[::-1]:
        keep = np.log10(last) - np.log10(p) >= spacing
        labels.append(f"{p:g}" if keep else "")
        last = p if keep else last
    ax.set_xticks(percents, labels[::-1])
    ax.minorticks_off()


# ---- the command line ----

def main(argv: list[str] | None = None) -> int:
    parser = Parser(description="Plot the trajectories of runs across seeds, or each run's rule shares "
                                "and per-type accuracies.")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories or globs of them")
    parser.add_argument("--metric", action="append", help="metric to plot (repeatable; default test_aux)")
    parser.add_argument("--per_run", action="store_true",
                        help="one figure per run: rule shares over training and accuracy per sentence type")
    parser.add_argument("--data_dir", default=None,
                        help="--per_run: where the runs' data folders are, to mark seen types "
                             "(default: as each args.json says)")
    parser.add_argument("--out", default=None,
                        help="output figure, .png, .pdf or .svg (default ./analysis/plot.png); with --per_run "
                             "a folder (default ./analysis)")
    parser.add_argument("--format", choices=FORMATS, default="png", help="--per_run: the figures' format (default png)")
    parser.add_argument("--dpi", type=int, default=DPI, help=f"resolution of PNG figures (default {DPI})")

    def command():
        # Reading runs needs the project's analysis code; imported here so that `import plot` stays light.
        from analysis.runs import curves, find_runs
        from analysis.seen import run_figure

        args = parser.parse_args(argv)
        if args.dpi < 1:
            raise HierGenError(f"--dpi must be at least 1 (got {args.dpi})")
        runs = find_runs(args.runs)
        if args.per_run:
            if args.metric:
                raise HierGenError("--metric does not apply to --per_run (it draws the rule shares and types)")
            out = args.out or "analysis"
            check_folder_can_be_made(out, "--out")
            for run in runs:
                path = os.path.join(out, f"{os.path.basename(run.path)}_run.{args.format}")
                save(run_figure(run, args.data_dir), path, args.dpi)
                print(f"wrote {path}")
            return
        out = args.out or os.path.join("analysis", "plot.png")
        if os.path.isdir(out):
            raise HierGenError(f"--out {out} is a folder; give the figure's file name (FIG.png)")
        if os.path.splitext(out)[1].lstrip(".").lower() not in FORMATS:
            raise HierGenError(f"--out {out}: figures are written as {', '.join('.' + f for f in FORMATS)}")
        check_folder_can_be_made(os.path.dirname(out) or ".", "--out")
        save(metric_panels(curves(runs, args.metric or ["test_aux"])), out, args.dpi)
        print(f"wrote {out}")

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
