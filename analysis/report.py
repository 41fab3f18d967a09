"""A sweep on one page: DIR/index.html, with the tables and figures it shows beside it.

    python -m analysis report RUN... [--out DIR] [--data_dir DIR]

The page holds the conditions compared (Mann-Whitney U per pair), the conditions table of
`dynamics` with its regimes and intervals, trajectories and outcomes, the training map when
`hmm --out DIR` has drawn one, each run's figure, and every table and figure found under each
RUN/analysis/. It opens offline: everything it shows is a file inside DIR (the run analyses are
copied there), named by a relative path, and it holds no script.
"""
from __future__ import annotations

import argparse
import html
import os
import shutil

import pandas as pd

import plot
from analysis import dynamics
from analysis.arguments import MULTI_RUN_OUT, add_conditions, add_count
from analysis.hmm import MIN_RUNS
from analysis.outputs import Outputs
from analysis.runs import RunDir, find_runs, read_metrics
from analysis.seen import run_figure
from models.weight_statistics import PREFIX
from util import atomic_write_text, check_folder_can_be_made

OPEN_RUNS_UP_TO = 6      # more runs than this and their figures start folded away
TABLE_ROWS = 30          # rows of a run's analysis table shown on the page; the CSV beside has all
IMAGES = (".png", ".svg")
RUN_ANALYSIS = (".csv", ".png", ".svg", ".pdf")
HMM_FIGURES = ("hmm_selection.png", "hmm_graph.png", "hmm_curves.png")
HMM_TABLES = ("hmm_selection", "hmm_detours")
STYLE = """body{font:14px/1.45 system-ui,sans-serif;max-width:1250px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0;display:block;overflow-x:auto}th,td{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.3em 0}
.differs{font-weight:600}.note{color:#555}summary{cursor:pointer;margin:.4em 0}code{background:#f5f5f5;padding:0 3px}"""
REGIMES = ("<b>hierarchical</b> / <b>linear</b>: at least 80% of the seeds end committed to that rule "
           "(its end share &ge; 0.95) and stable (late total variation &le; 0.05 per 10k steps); "
           "<b>memorization</b>: at least 80% stable with seen and unseen sentence types at least 0.5 apart; "
           "<b>unstable</b>: anything else, in particular seeds still moving at the end of training. "
           "Shares and the mean end value come with bootstrap 95% intervals over the condition's seeds.")


def weight_statistics_runs(runs: list[RunDir]) -> int:
    """How many runs logged the weight statistics (what the training map reads)."""
    return sum(not read_metrics(run, [PREFIX + "l1"]).empty for run in runs)


def table_html(table: pd.DataFrame, rows: int | None = None) -> str:
    shown = table if rows is None else table.head(rows)
    # to_html's na_rep skips pandas' own NA (bimodal of a condition too small to test): blank it too.
    shown = shown.apply(lambda c: c if pd.api.types.is_float_dtype(c) else c.astype(object).where(c.notna(), ""))
    return shown.to_html(index=False, border=0, na_rep="", float_format=lambda x: f"{x:.3g}", escape=True)


def conditions_view(per_condition: pd.DataFrame, metric: str) -> pd.DataFrame:
    """conditions.csv as read on the page: each share and the mean end value with its interval."""
    view = per_condition[["condition", "n_runs", "regime"]].copy()
    for value in ("p_hierarchical", "p_linear", "p_uncommitted", f"mean_end_{metric}"):
        view[value] = [f"{x:.2f} [{lo:.2f}, {hi:.2f}]" if pd.notna(x) else ""
                       for x, lo, hi in per_condition[[value, f"{value}_lo", f"{value}_hi"]].itertuples(index=False)]
    return view.join(per_condition[["mean_end_hierarchical_runs", "bimodal", "dip_p"]])


def image(path: str, alt: str) -> str:
    return f'<img src="{html.escape(path)}" alt="{html.escape(alt)}">'


def run_figures(runs: list[RunDir], folder: str, data_dir: str | None, dpi: int) -> dict[str, str]:
    """Each run's rule shares and per-type accuracy (as `plot.py --per_run` draws them) into
    DIR/runs/; the path of each, relative to DIR."""
    paths = {}
    for run in runs:
        relative = os.path.join("runs", f"{os.path.basename(run.path)}_run.png")
        plot.save(run_figure(run, data_dir), os.path.join(folder, relative), dpi)
        paths[run.name] = relative
    return paths


def copy_run_analyses(run: RunDir, folder: str) -> list[str]:
    """Every table and figure under RUN/analysis/, copied to DIR/runs/{run}/ (paths relative to DIR)."""
    source = os.path.join(run.path, "analysis")
    copied = []
    for root, _, files in sorted(os.walk(source)):
        for name in sorted(f for f in files if f.endswith(RUN_ANALYSIS)):
            relative = os.path.join("runs", os.path.basename(run.path), os.path.relpath(os.path.join(root, name), source))
            os.makedirs(os.path.dirname(os.path.join(folder, relative)), exist_ok=True)
            shutil.copyfile(os.path.join(root, name), os.path.join(folder, relative))
            copied.append(relative)
    return copied


def analysis_section(run: RunDir, files: list[str], folder: str) -> str:
    parts = [f"<h3>{html.escape(run.name)}</h3>"]
    for relative in files:
        name = html.escape(os.path.basename(relative))
        if relative.endswith(IMAGES):
            parts.append(f"<p>{name}</p>{image(relative, name)}")
        elif relative.endswith(".csv"):
            table = pd.read_csv(os.path.join(folder, relative))
            more = f" (first {TABLE_ROWS} of {len(table)} rows)" if len(table) > TABLE_ROWS else ""
            parts.append(f'<p><a href="{html.escape(relative)}">{name}</a>{more}</p>{table_html(table, TABLE_ROWS)}')
        else:
            parts.append(f'<p><a href="{html.escape(relative)}">{name}</a></p>')
    return "\n".join(parts)


def comparison_lines(compared: pd.DataFrame, metric: str) -> str:
    if compared.empty:
        return '<p class="note">One condition: nothing to compare.</p>'
    items = []
    for _, row in compared.iterrows():
        css = ' class="differs"' if row["p"] < dynamics.SIGNIFICANCE else ""
        items.append(f"<li{css}>{html.escape(dynamics.comparison_sentence(row, metric))}</li>")
    return ("<ul>" + "".join(items) + "</ul><p class=\"note\">Two-sided Mann-Whitney U tests of the end values; "
            "rank-biserial r = 2U/(n_a n_b) &minus; 1 (+1: every run of the first ends above every run of the "
            f"second). &ldquo;Differs&rdquo; means p &lt; {dynamics.SIGNIFICANCE}, uncorrected for the number "
            "of pairs.</p>")


def training_map(folder: str, n_with_statistics: int, arguments: str) -> str:
    if n_with_statistics < MIN_RUNS:
        return ""
    found = [name for name in HMM_FIGURES if os.path.isfile(os.path.join(folder, name))]
    if not found:
        return (f"<h2>Training map</h2><p class=\"note\">{n_with_statistics} runs logged weight statistics: "
                f"<code>python -m analysis hmm {html.escape(arguments)} --out {html.escape(folder)}</code> "
                "fits the map, and this page shows it when rewritten.</p>")
    tables = [f"<p>{name}.csv</p>{table_html(pd.read_csv(os.path.join(folder, name + '.csv')))}"
              for name in HMM_TABLES if os.path.isfile(os.path.join(folder, name + ".csv"))]
    return ("<h2>Training map (hidden Markov model of the weight statistics)</h2>"
            + "".join(image(name, name) for name in found) + "".join(tables))


def page(runs: list[RunDir], per_run: pd.DataFrame, per_condition: pd.DataFrame, compared: pd.DataFrame,
         figures: dict[str, str], analyses: dict[str, list[str]], folder: str, metric: str, hmm_part: str) -> str:
    n_conditions = len(per_condition)
    title = f"Sweep: {len(runs)} runs, {n_conditions} condition{'s' * (n_conditions != 1)}"
    fold = "" if len(runs) <= OPEN_RUNS_UP_TO else " (folded: click a condition to open it)"
    run_parts = []
    for condition, group in per_run.groupby("condition", observed=True, sort=False):
        images = "".join(image(figures[name], name) for name in group["run"])
        is_open = " open" if len(runs) <= OPEN_RUNS_UP_TO else ""
        run_parts.append(f"<details{is_open}><summary>{html.escape(str(condition))} ({len(group)} runs)</summary>"
                         f"{images}</details>")
    analysis_parts = [analysis_section(run, analyses[run.name], folder) for run in runs if analyses[run.name]]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">Generalization metric: <code>{html.escape(metric)}</code>. Tables:
<a href="conditions.csv">conditions.csv</a>, <a href="comparisons.csv">comparisons.csv</a>,
<a href="runs.csv">runs.csv</a>.</p>
<h2>Conditions compared</h2>
{comparison_lines(compared, metric)}
<h2>Conditions</h2>
{table_html(conditions_view(per_condition, metric))}
<p class="note">{REGIMES} Every column is in <a href="conditions.csv">conditions.csv</a>.</p>
<h2>Trajectories and outcomes</h2>
{image("trajectories.png", "trajectories")}
{image("outcomes.png", "outcomes")}
{hmm_part}
<h2>Runs</h2>
{table_html(per_run)}
<h2>Each run: rule shares and accuracy per sentence type{fold}</h2>
{"".join(run_parts)}
{"<h2>Analyses of single runs</h2>" + "".join(analysis_parts) if analysis_parts else ""}
</body></html>
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories or globs of them")
    parser.add_argument("--out", default=None, help=f"output folder (default: ./{MULTI_RUN_OUT})")
    parser.add_argument("--metric", default=dynamics.Settings.metric,
                        help="the generalization metric a(t) (default: test_aux)")
    add_conditions(parser)
    parser.add_argument("--data_dir", default=None,
                        help="where the runs' data folders are (default: as each args.json says)")
    add_count(parser, "--dpi", plot.DPI, "resolution of the figures, dots per inch")


def command(args: argparse.Namespace) -> None:
    """dynamics' tables and figures and each run's figure into DIR, then DIR/index.html."""
    folder = args.out or MULTI_RUN_OUT
    check_folder_can_be_made(folder, "--out")
    runs = find_runs(args.runs)
    s = dynamics.Settings(metric=args.metric, conditions=args.conditions)
    per_run, per_condition, compared = dynamics.write_dynamics(runs, s, args.data_dir, Outputs(folder, "png", args.dpi))
    figures = run_figures(runs, folder, args.data_dir, args.dpi)
    analyses = {run.name: copy_run_analyses(run, folder) for run in runs}
    hmm_part = training_map(folder, weight_statistics_runs(runs), " ".join(args.runs))
    path = os.path.join(folder, "index.html")
    atomic_write_text(path, page(runs, per_run, per_condition, compared, figures, analyses, folder, s.metric, hmm_part))
    print(f"wrote {len(figures)} run figures to {os.path.join(folder, 'runs')} and {path}")
