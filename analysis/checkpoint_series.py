"""A run as a series of checkpoints, for the analyses that read them (checkpoints, internals, probe,
trees): its arguments and checkpoint files, and each checkpoint's model in turn."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from typing import Iterator

from tqdm import tqdm

from checkpoint import LoadedModel, checkpoint_files, load_model
from config import Config, config_from_args, device_name, read_args
from data_utils.load import task_vocabulary
from util import HierGenError


@dataclass(frozen=True)
class CheckpointRun:
    """A run directory to analyse checkpoint by checkpoint."""

    path: str
    name: str
    config: Config  # as its args.json says, with --data_dir applied
    files: dict[int, str]  # checkpoint path by step, ascending
    device: str


def open_run(args: argparse.Namespace) -> CheckpointRun:
    """The run named on the command line, checked before anything is computed or written."""
    path = os.path.normpath(args.run)
    if not os.path.isfile(os.path.join(path, "args.json")):
        raise HierGenError(f"{path}: not a run directory (no args.json)")
    config = config_from_args(read_args(path), {}, source=f"{path}/args.json")
    if args.data_dir is not None:
        config = replace(config, data=replace(config.data, data_dir=args.data_dir))
    return CheckpointRun(path, os.path.basename(os.path.abspath(path)), config, checkpoint_files(path),
                         device_name(args.device, 0))


def each_checkpoint(run: CheckpointRun) -> Iterator[tuple[int, LoadedModel]]:
    """Each checkpoint's model, ready to evaluate, in step order, with a progress bar; a checkpoint
    of another vocabulary than its run's (one that records its own arguments) is refused."""
    vocab = task_vocabulary(run.config.data.dataset)
    bar = tqdm(total=len(run.files), desc=run.name, unit="checkpoint")
    try:
        for step, path in run.files.items():
            loaded = load_model(path, data_dir=run.config.data.data_dir, device=run.device)
            if loaded.vocab.words != vocab.words:
                raise HierGenError(f"{path}: a checkpoint of {loaded.config.data.dataset} (its vocabulary differs "
                                   f"from that of the run's dataset, {run.config.data.dataset})")
            yield step, loaded
            bar.update()
    except BaseException:
        bar.leave = False  # erased: an error's one line is not appended to a half-drawn bar
        raise
    finally:
        bar.close()
