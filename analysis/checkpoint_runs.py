"""What the checkpoint analyses (checkpoints, internals, probe, trees) share: the flags they all take,
a run directory's arguments and checkpoints, and each checkpoint's model in turn."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from typing import Iterator

from tqdm import tqdm

from checkpoint import LoadedModel, checkpoint_files, load_model
from config import Config, config_from_args, device_name, read_args
from data_utils.load import task_vocabulary
from util import HierGenError, check_folder_can_be_made


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run directory: ours, or the research code's (args.json and "
                        "checkpoint_{step}.pth or .pickle)")
    parser.add_argument("--data_dir", default=None, help="where the run's data are (default: as its args.json says)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:N or mps")
    parser.add_argument("--out", default=None, help="output folder (default: RUN/analysis)")


@dataclass(frozen=True)
class CheckpointRun:
    """A run directory to analyse checkpoint by checkpoint."""

    path: str
    name: str
    config: Config  # as its args.json says, with --data_dir applied
    files: dict[int, str]  # checkpoint path by step, ascending
    device: str
    out: str


def open_run(args: argparse.Namespace) -> CheckpointRun:
    """The run named on the command line, checked before anything is computed or written."""
    path = os.path.normpath(args.run)
    if not os.path.isfile(os.path.join(path, "args.json")):
        raise HierGenError(f"{path}: not a run directory (no args.json)")
    config = config_from_args(read_args(path), {}, source=f"{path}/args.json")
    if args.data_dir is not None:
        config = replace(config, data=replace(config.data, data_dir=args.data_dir))
    files = checkpoint_files(path)
    out = args.out or os.path.join(path, "analysis")
    check_folder_can_be_made(out, "--out")
    return CheckpointRun(path, os.path.basename(os.path.abspath(path)), config, files,
                         device_name(args.device, 0), out)


def models(run: CheckpointRun) -> Iterator[tuple[int, LoadedModel]]:
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
