"""`python -m recipes list|status|run|analyse`: the seed paper's experiments, from training to the report.

    python -m recipes list
    python -m recipes run NAME [--scale mini|paper] [--out DIR] [--slurm [--seeds_per_task K]]
    python -m recipes status NAME [--scale ...] [--out DIR]

`run` trains every run of the recipe that is not finished (a rerun continues; killed runs resume),
then writes DIR/report/index.html. DIR defaults to ./experiments/NAME_SCALE.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import textwrap

from analysis.arguments import add_count
from recipes import recipe as recipes
from recipes import runner
from util import Parser, run_command


def add_recipe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="a recipe (python -m recipes list)")
    parser.add_argument("--scale", choices=recipes.SCALES, default="mini",
                        help="mini: 2 layers x 128, 3,000 steps, a CPU; paper: the paper's model and 300k steps")
    parser.add_argument("--out", default=None, help="the recipe's folder (default: ./experiments/NAME_SCALE)")
    add_count(parser, "--steps", None, "shrink the recipe: train this many steps (default: the scale's)")
    add_count(parser, "--seeds", None, "shrink the recipe: only its first N seeds (default: all)")


def loaded(args: argparse.Namespace) -> tuple[recipes.Recipe, str]:
    recipe = recipes.load(args.name, args.scale, args.steps, args.seeds)
    return recipe, args.out or os.path.join("experiments", f"{args.name}_{args.scale}")


def list_recipes(args: argparse.Namespace) -> None:
    for name in recipes.names():
        recipe = recipes.load(name)
        print(f"{name}: {', '.join(recipe.conditions)}")
        print(textwrap.indent(textwrap.fill(recipe.claim, 96), "    "))


def status(args: argparse.Namespace) -> None:
    recipe, out = loaded(args)
    save_dir, _, _ = runner.paths(out)
    reached = recipes.progress(recipe, save_dir)
    busy = runner.running(out)
    print(f"{recipe.name} ({args.scale}, {recipe.max_train_steps} steps) in {out}")
    for condition in recipe.conditions:
        states = {"done": [], "running": [], "missing": []}
        for seed in recipe.seeds:
            step = reached[(condition, seed)]
            state = "done" if step >= recipe.max_train_steps else "running" if (condition, seed) in busy else "missing"
            states[state].append(f"{seed}" if step in (-1, recipe.max_train_steps) else f"{seed}@{step}")
        print(f"  {condition}: " + "; ".join(f"{len(v)} {k}" + (f" ({' '.join(v)})" if v and k != "done" else "")
                                             for k, v in states.items()))


def run(args: argparse.Namespace) -> None:
    recipe, out = loaded(args)
    data_dir = os.path.abspath(args.data_dir)
    if args.slurm:
        command = [sys.executable, "-m", "recipes", "analyse", args.name, "--scale", args.scale,
                   "--out", os.path.abspath(out)] + [f for flag in ("steps", "seeds") if getattr(args, flag) is not None
                                                     for f in (f"--{flag}", str(getattr(args, flag)))]
        for job in runner.submit(recipe, out, data_dir, args.seeds_per_task, shlex.split(args.sbatch), command):
            what = f"{job['condition']}: seeds {','.join(map(str, job['seeds']))}" if job["condition"] else "report"
            print(f"submitted job {job['job']} ({what})")
        return
    runner.train_locally(recipe, out, data_dir, args.jobs)
    print(f"wrote {runner.analyse(recipe, out)}")


def analyse(args: argparse.Namespace) -> None:
    recipe, out = loaded(args)
    print(f"wrote {runner.analyse(recipe, out)}")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m recipes", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="the recipes and the claims they test")
    add_recipe(commands.add_parser("status", help="runs done, running and missing"))
    run_parser = commands.add_parser("run", help="train what is missing, then analyse and write the report")
    add_recipe(run_parser)
    run_parser.add_argument("--data_dir", default=os.path.join(recipes.REPO, "data_utils"),
                            help="where the datasets are (generated there when missing; default: data_utils)")
    add_count(run_parser, "--jobs", os.cpu_count() or 1, "shares of the runs trained at once, one core each")
    run_parser.add_argument("--slurm", action="store_true",
                            help="submit the training as SLURM arrays (submit_gpu.sh) and the report as a job after them")
    add_count(run_parser, "--seeds_per_task", 1, "--slurm: seeds one array task trains")
    run_parser.add_argument("--sbatch", default="", help="--slurm: more sbatch flags, e.g. '--partition=gpu'")
    add_recipe(commands.add_parser("analyse", help="only the analyses and the report of the runs trained"))
    handlers = {"list": list_recipes, "status": status, "run": run, "analyse": analyse}

    def command():
        args = parser.parse_args(argv)
        handlers[args.command](args)

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
