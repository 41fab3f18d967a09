"""`python -m analysis COMMAND ...`: analyses of run directories, written as CSV tables and figures (PNG, PDF or SVG).

A command is a module with `add_arguments(parser)` and `command(args)`, listed in COMMANDS.
"""
from __future__ import annotations

import argparse
import sys

from analysis import checkpoints, dynamics, heads, hmm, internals, predict, probe, report, trees, wandb_import
from util import Parser, run_command

COMMANDS = {"dynamics": dynamics, "import-wandb": wandb_import, "checkpoints": checkpoints, "internals": internals,
            "probe": probe, "heads": heads, "trees": trees, "hmm": hmm, "predict": predict, "report": report}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m analysis", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_arguments(subparsers.add_parser(name, help=module.__doc__.splitlines()[0],
                                                   description=module.__doc__,
                                                   formatter_class=argparse.RawDescriptionHelpFormatter))

    def command():
        args = parser.parse_args(argv)
        COMMANDS[args.name].command(args)

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
