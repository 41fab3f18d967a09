"""Import W&B runs: each run of a project (its config and history) becomes a run directory.

    python -m analysis import-wandb ENTITY/PROJECT [--out RUNS_DIR] [--filter KEY=VALUE ...]

Needs the wandb package and a login (`wandb login`). `--filter` keeps the runs whose W&B field KEY
equals VALUE (all filters must hold): `config.dataset=question_D50`, `config.lr=0.0001`,
`state=finished`; a VALUE that is JSON is read as JSON, so `display_name={"$regex": "^qf_"}` is a
MongoDB-style condition, as W&B's API takes them. Each run becomes `RUNS_DIR/{run name}`
(`{run name}_{run id}` where two runs share a name) holding `args.json` (the run's config) and
`metrics.jsonl` (its whole history, unsampled, one event per logged step); then every analysis
of metrics reads it as it reads this project's own runs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter

from util import HierGenError, atomic_open, atomic_write_text, check_folder_can_be_made


def import_project(project: str, out: str, filters: list[str] = (), api=None) -> list[str]:
    """Write one run directory per W&B run of `project` that passes `filters`; the directories written.

    `api` stands in for `wandb.Api()` (tests pass their own).
    """
    if not re.fullmatch(r"[^/\s]+/[^/\s]+", project):
        raise HierGenError(f"expected ENTITY/PROJECT, got {project!r}")
    query = parse_filters(filters)
    check_folder_can_be_made(out, "--out")
    api = api or _wandb_api()
    try:
        runs = list(api.runs(project, filters=query))
    except Exception as e:  # noqa: BLE001  (wandb raises many types: not found, no access, network)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HierGenError(f"cannot list the runs of W&B project {project}: {reason}") from None
    if not runs:
        raise HierGenError(f"W&B project {project} has no runs" + (" that pass the filters" if filters else ""))
    counts = Counter(run.name for run in runs)
    written = []
    for run in runs:
        name = _safe(run.name if counts[run.name] == 1 else f"{run.name}_{run.id}")
        path = os.path.join(out, name)
        os.makedirs(path, exist_ok=True)
        config = {k: v for k, v in run.config.items() if not k.startswith("_")}
        atomic_write_text(os.path.join(path, "args.json"), json.dumps(config, indent=4))
        with atomic_open(os.path.join(path, "metrics.jsonl")) as f:
            for row in run.scan_history():
                event = _event(row)
                if event:
                    f.write(json.dumps(event) + "\n")
        written.append(path)
    return written


def parse_filters(filters: list[str]) -> dict:
    """`KEY=VALUE` filters as one W&B (MongoDB-style) query in which all of them hold."""
    conditions = []
    for text in filters:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise HierGenError(f"--filter {text!r}: expected KEY=VALUE, e.g. config.dataset=question_D50")
        try:
            value = json.loads(value)
        except ValueError:
            pass  # plain text: compared as a string
        conditions.append({key: value})
    return {"$and": conditions} if conditions else {}


def _event(row: dict) -> dict | None:
    """A history row as a metrics.jsonl event: its numbers, with `iteration` (else W&B's step)."""
    event = {k: v for k, v in row.items() if not k.startswith("_") and isinstance(v, (int, float))}
    if not event:
        return None
    event.setdefault("iteration", row["_step"])
    return event


def _safe(name: str) -> str:
    """A run name as one folder name."""
    return re.sub(r"[^\w.+=-]", "_", name).lstrip(".") or "run"


def _wandb_api():
    """wandb is imported here only: machines that never import runs need not have it."""
    try:
        import wandb
    except ImportError:
        raise HierGenError("import-wandb needs the wandb package (pip install wandb) and `wandb login`") from None
    try:
        return wandb.Api()
    except wandb.errors.UsageError as e:
        raise HierGenError(f"W&B refused the API ({e}); log in first with `wandb login`") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", metavar="ENTITY/PROJECT", help="the W&B project whose runs to import")
    parser.add_argument("--out", default="runs", help="folder that receives the run directories (default: ./runs)")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="keep the runs whose W&B field KEY equals VALUE (repeatable; all must hold), "
                             "e.g. config.dataset=question_D50 or state=finished")


def command(args: argparse.Namespace) -> None:
    written = import_project(args.project, args.out, args.filter)
    print(f"imported {len(written)} runs into {args.out}")
