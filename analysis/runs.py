"""Run directories: finding them, reading args.json and metrics.jsonl, grouping runs into conditions.

A run directory holds `args.json` (every training flag) and, for most analyses, `metrics.jsonl`
(one JSON event per line, each with its `iteration`). Runs whose arguments differ only in seed and
bookkeeping form one condition, named by the `flag=value` pairs that differ between conditions.
"""
from __future__ import annotations

import functools
import glob
import json
import operator
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from config import read_args, unseeded
from util import HierGenError

# Shares of each rule's answer on the generalization lines, (hierarchical, linear): QF, then TI
# (agreeing with the subject is the hierarchical rule, with the most recent noun the linear one).
RULE_SHARES = (("test_hierarchical", "test_linear"), ("test_agree_subject", "test_agree_recent"))
NEWLINE = b"\n"
PARALLEL_FROM = 32  # runs; fewer are read in this process (starting workers costs more)
# Arguments that say where or how a run was executed or evaluated, not what it trained.
BOOKKEEPING = frozenset({"seed", "seeds", "save_dir", "save_prefix", "run_name", "data_dir", "device",
                         "gpu_id", "resume", "eval_batch_size", "eval_keys", "model_load_path",
                         "no_weight_stats"})


@dataclass
class RunDir:
    """One run directory; `name` is its folder name (its path where two folders share a name)."""

    path: str
    name: str
    args: dict

    @property
    def seed(self) -> int | None:
        return self.args.get("seed")


def find_runs(patterns: Iterable[str]) -> list[RunDir]:
    """The run directories (folders holding args.json) named by paths or globs, in the given order."""
    patterns = list(patterns)
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not any(os.path.exists(m) for m in matches):
            raise HierGenError(f"no such run directory: {pattern}")
        for match in matches:
            path = os.path.normpath(match)
            if os.path.isfile(os.path.join(path, "args.json")) and path not in paths:
                paths.append(path)
    if not paths:
        raise HierGenError(f"no run directory (a folder with args.json) in {' '.join(patterns) or 'the arguments'}")
    names = [os.path.basename(os.path.abspath(p)) for p in paths]
    return [RunDir(p, name if names.count(name) == 1 else p, read_args(p)) for p, name in zip(paths, names)]


def read_metrics(run: RunDir, names: Iterable[str]) -> pd.DataFrame:
    """The logged values of `names` (a name also selects its `name/...` keys), one row per step."""
    path = os.path.join(run.path, "metrics.jsonl")
    if not os.path.isfile(path):
        raise HierGenError(f"{run.path} has no metrics.jsonl (for a run logged to W&B only: "
                           "python -m analysis import-wandb ENTITY/PROJECT)")
    names = tuple(names)
    events = _events_mentioning(path, names)
    if any(not isinstance(event, dict) or "iteration" not in event for event in events):
        raise HierGenError(f"{path}: an event without its iteration")
    prefixes = tuple(f"{name}/" for name in names)
    columns = sorted(k for k in set().union(*events) if k in names or k.startswith(prefixes))
    try:
        values = np.array(_rows(events, columns), dtype=float).reshape(len(events), len(columns))
    except (TypeError, ValueError):
        raise HierGenError(f"{path}: a logged value of {', '.join(names)} is not a number") from None
    steps = pd.Index([e["iteration"] for e in events], name="step")
    table = pd.DataFrame(values, index=steps, columns=columns).sort_index(kind="stable")
    return table[~table.index.duplicated(keep="last")]


def _events_mentioning(path: str, names: tuple[str, ...]) -> list[dict]:
    """The events of metrics.jsonl whose line mentions one of `names`, parsed.

    A run logs a line per training step and one per evaluation: searching the whole file for the
    names and parsing only the lines they fall in skips the 300k step lines of a paper run in half
    the time of a Python loop over the lines (bench/dynamics.py measures it).
    """
    with open(path, "rb") as f:
        data = f.read()
    data = data[:data.rfind(b"\n") + 1]  # a line without its newline is still being written
    mention = re.compile(b"|".join(re.escape(f'"{name}'.encode()) for name in names))
    starts, lines, pos = [], [], 0
    while match := mention.search(data, pos):
        starts.append(data.rfind(b"\n", 0, match.start()) + 1)
        pos = data.index(b"\n", match.end()) + 1
        lines.append(data[starts[-1]:pos])
    # One document for all lines: the parser then decodes each repeated key once, not per line.
    try:
        events = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        events = []
    if len(events) == len(lines):
        return events
    return [_event(path, data, start, line) for start, line in zip(starts, lines)]


def _event(path: str, data: bytes, start: int, line: bytes) -> dict:
    """One line parsed alone, to name the line that spoiled the whole document."""
    try:
        return json.loads(line)
    except ValueError:
        raise HierGenError(f"{path}:{data.count(NEWLINE, 0, start) + 1}: not a JSON event") from None


def _rows(events: list[dict], columns: list[str]) -> list:
    """The events' values of `columns`, None where an event lacks one."""
    if not columns:
        return []
    get = operator.itemgetter(*columns)  # C-speed when an event has every column (the usual case)
    rows = []
    for event in events:
        try:
            rows.append(get(event))
        except KeyError:
            rows.append([event.get(k) for k in columns])
    return rows


def condition_names(runs: list[RunDir], by: str = "flags") -> list[str]:
    """Each run's condition. By "flags": the `flag=value` pairs of the non-bookkeeping flags that
    differ; when all runs form one condition, it is named by its dataset. By "prefix": the run's
    --save_prefix without the `_seed{N}` that --seeds appends (a recipe's condition names).
    """
    if by == "prefix":
        return [unseeded(run.args.get("save_prefix") or run.name) for run in runs]
    keys = [{k: json.dumps(v, sort_keys=True) for k, v in run.args.items()
             if k not in BOOKKEEPING and not k.startswith("wandb_")} for run in runs]
    flags = sorted(set().union(*keys))
    differing = [flag for flag in flags if len({k.get(flag) for k in keys}) > 1] or ["dataset"]
    return [" ".join(f"{flag}={_plain(run.args.get(flag))}" for flag in differing) for run in runs]


def _plain(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_table(runs: list[RunDir], by: str = "flags") -> pd.DataFrame:
    """run, condition (named `by` condition_names) and seed of each run. Conditions named by flags
    are ordered by value (numbers by value, text naturally); by prefix, in the order the runs come."""
    names = condition_names(runs, by)
    order = (list(dict.fromkeys(names)) if by == "prefix"
             else sorted(set(names), key=lambda name: [_natural(part) for part in name.split(" ")]))
    table = pd.DataFrame({"run": [r.name for r in runs], "condition": names,
                          "seed": pd.array([r.seed for r in runs], dtype="Int64")})
    table["condition"] = pd.Categorical(table["condition"], categories=order, ordered=True)
    return table.sort_values(["condition", "seed", "run"], kind="stable").reset_index(drop=True)


def _natural(text: str) -> list:
    """Sort key that orders embedded numbers by value: D50 < D100, lr=5e-05 < lr=0.0001."""
    flag, _, value = text.partition("=")
    try:
        return [flag, 0, float(value)]
    except ValueError:
        return [flag, 1, [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", value)]]


def common_steps(frames: dict[str, pd.DataFrame], table: pd.DataFrame, metric: str) -> dict[str, pd.DataFrame]:
    """Each run's frame cut to the steps at which every run of its condition logged `metric`."""
    for name, frame in frames.items():
        if metric not in frame or frame[metric].isna().all():
            raise HierGenError(f"metric {metric} was never logged by run {name}")
    aligned = {}
    for condition, group in table.groupby("condition", observed=True):
        steps = None
        for name in group["run"]:
            logged = frames[name].index[frames[name][metric].notna()]
            steps = logged if steps is None else steps.intersection(logged)
        if steps.empty:
            raise HierGenError(f"the runs of condition {condition} share no step at which {metric} was logged")
        aligned.update({name: frames[name].loc[steps] for name in group["run"]})
    return aligned


def rule_shares(frame: pd.DataFrame) -> tuple[str, str] | None:
    """The (hierarchical, linear) share columns a run logged, None when it logged neither pair."""
    return next(((h, l) for h, l in RULE_SHARES if h in frame and l in frame), None)


def read_runs(runs: list[RunDir], names: list[str], workers: int | None = None,
              by: str = "flags") -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The run table (run_table, conditions named `by`) and each run's logged `names`, by run name.

    Parsing the JSON lines is most of the time of a sweep's analysis and holds the interpreter:
    many runs are read by `workers` processes (default: one per usable core).
    """
    table = run_table(runs, by)
    by_name = {run.name: run for run in runs}
    ordered = [by_name[name] for name in table["run"]]
    workers = workers or len(os.sched_getaffinity(0))
    read = functools.partial(read_metrics, names=names)
    if workers == 1 or len(ordered) < PARALLEL_FROM:
        frames = list(map(read, ordered))
    else:
        with ProcessPoolExecutor(workers) as pool:
            frames = list(pool.map(read, ordered, chunksize=8))
    return table, dict(zip(table["run"], frames))


def curves(runs: list[RunDir], metrics: list[str]) -> pd.DataFrame:
    """Long table of the runs' trajectories: metric, condition, run, seed, step, value."""
    table, frames = read_runs(runs, metrics)
    return pd.concat([trajectory_rows(table, common_steps(frames, table, m), m) for m in metrics],
                     ignore_index=True)


def trajectory_rows(table: pd.DataFrame, aligned: dict[str, pd.DataFrame], metric: str) -> pd.DataFrame:
    """The long rows of one metric from frames already cut to their condition's common steps."""
    rows = [pd.DataFrame({"metric": metric, "condition": row.condition, "run": row.run, "seed": row.seed,
                          "step": aligned[row.run].index, "value": aligned[row.run][metric].to_numpy(float)})
            for row in table.itertuples()]
    out = pd.concat(rows, ignore_index=True)
    out["condition"] = pd.Categorical(out["condition"], categories=table["condition"].cat.categories, ordered=True)
    return out
