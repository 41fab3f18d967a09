"""Every checkpoint of a run evaluated again: the training evaluation's metrics and full-sequence accuracy.

    python -m analysis checkpoints RUN [--splits val,test] [--data_dir DIR] [--device auto] [--out DIR]

Per checkpoint and split: exactly the metrics training logs at an evaluation with --callback
(`curr-{split}-ppl` and its halves, `{split}_aux`, `{split}_aux_type/{type}`, the rule shares such
as `{split}_hierarchical`), computed the same way on the same batches, so that a checkpoint of this
project gives back the values logged when it was saved; `best/{split}` is training history, not a
property of one checkpoint, and is left out. Plus `{split}_full_seq`, McCoy et al.'s full-sentence
accuracy: the share of lines whose greedily decoded output (after the marker, until EOS) equals the
gold output word for word. The classifier (--mode enc) predicts one token, not a sentence: its
table has no `_full_seq` columns.

Splits are any evaluation splits of the run's task (TI's val_rc, test_prep, ... included). Writes
checkpoints.csv (one row per checkpoint: `step`, then the metric names) and checkpoints.png (the
accuracies `{split}_aux` and `{split}_full_seq` over the steps).
"""
from __future__ import annotations

import argparse

import pandas as pd

import plot
from analysis.arguments import add_run, outputs
from analysis.checkpoint_series import CheckpointRun, each_checkpoint, open_run
from analysis.outputs import print_steps
from checkpoint import LoadedModel
from collate import Batch
from data_utils.load import read_eval, task_vocabulary
from data_utils.registry import check_eval_splits
from decoding import full_sequence_accuracy
from evaluation import evaluate, make_eval_batches
from util import HierGenError


def evaluate_checkpoint(loaded: LoadedModel, batches: dict[str, list[Batch]], device: str) -> dict[str, float]:
    """The training evaluation's metrics of one model on each split, and its full-sequence accuracy."""
    family = loaded.config.model.family
    metrics: dict[str, float] = {}
    for split, split_batches in batches.items():
        metrics.update(evaluate(loaded.objective, split_batches, device).metrics(split, callback=True))
        if family != "enc":
            metrics[f"{split}_full_seq"] = full_sequence_accuracy(loaded.model, family, split_batches,
                                                                  loaded.vocab.eos, device)
    return metrics


def checkpoint_table(run: CheckpointRun, splits: list[str]) -> pd.DataFrame:
    """checkpoints.csv: one row per checkpoint of the run, its metrics on each split."""
    vocab = task_vocabulary(run.config.data.dataset)
    # The run's own evaluation batch size: on the device it trained on, the batches of its evaluations
    # give the sums it logged.
    batches = {split: make_eval_batches(examples, vocab, run.config.train.eval_batch_size)
               for split, examples in read_eval(run.config.data, splits).items()}
    return pd.DataFrame([{"step": step, **evaluate_checkpoint(loaded, batches, run.device)}
                         for step, loaded in each_checkpoint(run)])


def accuracy_columns(table: pd.DataFrame, splits: list[str]) -> list[str]:
    """The main accuracies, split by split: `{split}_aux` and `{split}_full_seq` where present."""
    return [c for split in splits for c in (f"{split}_aux", f"{split}_full_seq") if c in table]


def parse_splits(text: str, dataset: str) -> list[str]:
    """`--splits val,test_rc` as a list, refused unless every split is an evaluation split of the task."""
    splits = [s for s in text.split(",") if s]
    if not splits:
        raise HierGenError(f"--splits {text!r} names no split")
    check_eval_splits(dataset, splits)
    return list(dict.fromkeys(splits))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run(parser)
    parser.add_argument("--splits", default="val,test",
                        help="comma-separated evaluation splits of the run's task (default: val,test)")


def command(args: argparse.Namespace) -> None:
    """Evaluate every checkpoint, then write checkpoints.csv and its figure; print a summary."""
    run = open_run(args)
    out = outputs(args, run.path)
    splits = parse_splits(args.splits, run.config.data.dataset)
    table = checkpoint_table(run, splits)
    accuracies = accuracy_columns(table, splits)
    print_steps(table, accuracies)
    out.write({"checkpoints": table}, {"checkpoints": plot.checkpoint_accuracies(table, accuracies, run.name)})
