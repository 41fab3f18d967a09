"""The arguments analysis commands share, and where their outputs go.

The rule for `--out`: an analysis of one run writes into `RUN/analysis/`, beside what it reads; an
analysis of several runs writes into `./analysis/`. (`import-wandb` makes run directories, into
`./runs/`.) Every command that draws takes `--format png|pdf|svg` and `--dpi`.
"""
from __future__ import annotations

import argparse
import os

import plot
from analysis.outputs import Outputs
from config import check_seed
from util import HierGenError, check_folder_can_be_made

MULTI_RUN_OUT = "analysis"


def add_runs(parser: argparse.ArgumentParser) -> None:
    """RUN... (directories or globs), `--out` (default ./analysis) and the figure format."""
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories or globs of them")
    parser.add_argument("--out", default=None, help=f"output folder (default: ./{MULTI_RUN_OUT})")
    add_format(parser)


def add_run(parser: argparse.ArgumentParser) -> None:
    """One RUN with its checkpoints, where its data are, the device, `--out` (default RUN/analysis)
    and the figure format."""
    parser.add_argument("run", metavar="RUN", help="a run directory: ours, or the research code's (args.json and "
                        "checkpoint_{step}.pth or .pickle)")
    parser.add_argument("--data_dir", default=None, help="where the run's data are (default: as its args.json says)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:N or mps")
    parser.add_argument("--out", default=None, help="output folder (default: RUN/analysis)")
    add_format(parser)


def add_conditions(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conditions", choices=("flags", "prefix"), default="flags",
                        help="name each condition by the flags that differ between conditions (default), "
                             "or by the runs' --save_prefix without _seed{N} (recipes name theirs so)")


def add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=plot.FORMATS, default="png", help="format of the figures (default: png)")
    add_count(parser, "--dpi", plot.DPI, "resolution of PNG figures, dots per inch")


def add_count(parser: argparse.ArgumentParser, flag: str, default: int | None, help: str, minimum: int = 1) -> None:
    """An integer flag refused in one line below `minimum`; a default of None is for the help to explain."""
    parser.add_argument(flag, type=int, default=default, action=_AtLeast, minimum=minimum,
                        help=help if default is None else f"{help} (default: {default})")


def add_seed(parser: argparse.ArgumentParser, default: int, help: str) -> None:
    """`--seed`, refused in one line where NumPy could not take it."""
    parser.add_argument("--seed", type=int, default=default, action=_Seed, help=f"{help} (default: {default})")


class _AtLeast(argparse.Action):
    def __init__(self, *args, minimum: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.minimum = minimum

    def __call__(self, parser, namespace, value, option_string=None):
        if value < self.minimum:
            raise HierGenError(f"{option_string} must be at least {self.minimum} (got {value})")
        setattr(namespace, self.dest, value)


class _Seed(argparse.Action):
    def __call__(self, parser, namespace, value, option_string=None):
        check_seed(option_string, value)
        setattr(namespace, self.dest, value)


def outputs(args: argparse.Namespace, run: str | None = None) -> Outputs:
    """Where a command writes (`--out`, else RUN/analysis for the analysis of one `run`, else
    ./analysis), checked before anything is computed."""
    folder = args.out or (os.path.join(run, "analysis") if run is not None else MULTI_RUN_OUT)
    check_folder_can_be_made(folder, "--out")
    return Outputs(folder, args.format, args.dpi)
