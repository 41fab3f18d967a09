"""Seen and unseen sentence types: which generalization types a run met as training inputs.

A test line's type is *seen* when its input (declarative) tag sequence occurs as the input of a
training line of the run, its data read through the project's loader as its args.json says.
Low-diversity datasets (`question_D{N}`: N distinct input tag sequences) leave most test types
unseen; a memorizing model then scores differently on the two groups.
"""
from __future__ import annotations

from dataclasses import fields
from functools import lru_cache

import numpy as np
import pandas as pd

from data_utils import question, tense
from data_utils.config import DataConfig
from data_utils.example import Example
from data_utils.load import load_task
import plot
from analysis.runs import RULE_SHARES, RunDir, read_metrics
from data_utils.registry import REGISTRY, dataset_folders, missing_files
from util import HierGenError

TYPE_PREFIX = "test_aux_type"  # the per-type accuracies of the generalization split
MARKERS = frozenset(question.MARKERS) | frozenset(tense.MARKERS)


def data_config(args: dict, data_dir: str | None = None) -> DataConfig | None:
    """The run's data flags (`data_dir` overriding its own folder); None for an unknown dataset."""
    if args.get("dataset") not in REGISTRY:
        return None
    flags = {f.name: args[f.name] for f in fields(DataConfig) if f.name in args}
    if data_dir is not None:
        flags["data_dir"] = data_dir
    return DataConfig(**flags)


def type_table(args: dict, data_dir: str | None = None) -> pd.DataFrame | None:
    """Per generalization type (index: its metric key): its test line count and whether it is seen.

    None when the run's data files are not all there: they are read, never generated, so that
    a user's data folder is not written to.
    """
    cfg = data_config(args, data_dir)
    return None if cfg is None or not _files_present(cfg) else _types(cfg)


def _files_present(cfg: DataConfig) -> bool:
    """Whether every file the loader would otherwise generate exists."""
    return not any(missing_files(d.path(cfg.data_dir, cfg.data_seed), d) for d in dataset_folders(cfg.dataset))


@lru_cache(maxsize=None)
def _types(cfg: DataConfig) -> pd.DataFrame:
    data = load_task(cfg, ["test"])
    trained = {_input_tags(e) for e in data.train}
    # The per-type accuracies count the lines on which the two rules disagree.
    rule_lines = [e for e in data.eval["test"] if e.target is not None and e.target.answers]
    keys = pd.Series([f"{TYPE_PREFIX}/{e.type_tag.replace(chr(9), ' ')}" for e in rule_lines])
    table = keys.value_counts().rename("lines").to_frame()
    seen = {f"{TYPE_PREFIX}/{e.type_tag.replace(chr(9), ' ')}": _input_tags(e) in trained for e in rule_lines}
    table["seen"] = [seen[key] for key in table.index]
    return table.sort_index()


def input_tags_of_key(key: str) -> str:
    """The input tag sequence of a per-type metric key `test_aux_type/<input tags> marker <output tags>`."""
    words = key.split("/", 1)[1].split(" ")
    end = next((i for i, w in enumerate(words) if w in MARKERS), len(words))
    return " ".join(words[:end])


def _input_tags(example: Example) -> str:
    """The input's tag sequence: the type tag `<input tags> marker<TAB><output tags>` up to the marker."""
    return example.type_tag.split("\t")[0].rsplit(" ", 1)[0]


def seen_accuracy(frame: pd.DataFrame, types: pd.DataFrame) -> pd.DataFrame:
    """Per step, the test accuracy over the lines of seen types and over those of unseen types.

    Types a run did not log at a step are left out of that step's mean.
    """
    acc = frame.reindex(columns=types.index).to_numpy(float)
    logged = ~np.isnan(acc)
    out = {}
    for column, seen in (("seen_acc", True), ("unseen_acc", False)):
        lines = np.where(types["seen"].to_numpy(bool) == seen, types["lines"].to_numpy(float), 0.0)
        with np.errstate(invalid="ignore"):  # no line of that kind: NaN, an empty cell
            out[column] = np.nan_to_num(acc) @ lines / (logged @ lines)
    return pd.DataFrame(out, index=frame.index)


def run_figure(run: RunDir, data_dir: str | None = None):
    """The figure `plot.py --per_run` draws of a run: plot.run_view of its run_series."""
    frame, accuracy, seen = run_series(run, data_dir)
    return plot.run_view(frame, accuracy, run.name, seen)


def run_series(run: RunDir, data_dir: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series | None]:
    """What plot.run_view draws of a run directory: its rule shares and
    test_aux by step; its accuracy by step and sentence type (columns named by the input tags); and
    which of those types it saw in training, where its data can be read (else None)."""
    frame = read_metrics(run, ["test_aux", "test_other", *(c for pair in RULE_SHARES for c in pair), TYPE_PREFIX])
    if frame.empty:
        raise HierGenError(f"{run.path}: no evaluation on the generalization set was logged")
    keys = [c for c in frame if c.startswith(TYPE_PREFIX + "/")]
    accuracy = frame[keys].rename(columns=input_tags_of_key)
    types = type_table(run.args, data_dir)
    seen = None if types is None else types["seen"].rename(input_tags_of_key)
    return frame.drop(columns=keys), accuracy, seen
