"""A recipe: one experiment of the seed paper as data (recipes/NAME.toml), and what of it is trained.

A recipe file holds `claim` (the published claim it tests), `flags` (training flags of every run),
`[conditions]` (name = the flags that make that condition) and `[scales.paper]`, `[scales.mini]`
(each `seeds` and `flags`: model, steps, evaluation schedule). TOML because it is read by the
standard library (tomllib) and takes comments and multi-line strings, which a claim needs.

A run of a recipe is one condition and one seed; its run directory is `OUT/runs/{condition}_seed{N}`
(`_{SLURM_JOB_ID}` appended when SLURM trained it), its args.json naming `{condition}_seed{N}` as
its save_prefix either way.
"""
from __future__ import annotations

import glob
import os
import shlex
import tomllib
from dataclasses import dataclass, replace

from checkpoint import checkpoint_steps
from config import read_args, seeded
from util import HierGenError

FOLDER = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(FOLDER)
SCALES = ("mini", "paper")


@dataclass(frozen=True)
class Recipe:
    name: str
    claim: str
    conditions: dict[str, list[str]]  # name -> flags of that condition
    seeds: tuple[int, ...]
    flags: tuple[str, ...]            # the recipe's flags, then the scale's

    @property
    def max_train_steps(self) -> int:
        return int(flag_value(self.flags, "--max_train_steps"))

    def command(self, condition: str, seeds: list[int], save_dir: str, data_dir: str) -> list[str]:
        """train_transformers.py's arguments for `seeds` of one condition, continuing any run begun."""
        return [*self.flags, *self.conditions[condition], "--seeds", ",".join(map(str, seeds)),
                "--save_dir", save_dir, "--save_prefix", condition, "--data_dir", data_dir, "--resume"]


def flag_value(flags: tuple[str, ...], flag: str) -> str:
    """The last value given to `flag` (the one argparse keeps)."""
    values = [flags[i + 1] for i, f in enumerate(flags[:-1]) if f == flag]
    if not values:
        raise HierGenError(f"the recipe gives no {flag}")
    return values[-1]


def names() -> list[str]:
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(FOLDER, "*.toml")))


def load(name: str, scale: str = "mini", steps: int | None = None, seeds: int | None = None) -> Recipe:
    """Recipe NAME at `scale`; `steps` and `seeds` (how many of its seeds) shrink it, for tests."""
    path = os.path.join(FOLDER, f"{name}.toml")
    if not os.path.isfile(path):
        raise HierGenError(f"no recipe {name!r}; recipes: {', '.join(names())}")
    with open(path, "rb") as f:
        data = tomllib.load(f)
    if scale not in data["scales"]:
        raise HierGenError(f"recipe {name} has no {scale} scale")
    level = data["scales"][scale]
    recipe = Recipe(name, " ".join(data["claim"].split()),
                    {c: shlex.split(flags) for c, flags in data["conditions"].items()}, tuple(level["seeds"]),
                    (*shlex.split(data["flags"]), *shlex.split(level["flags"])))
    if steps is not None:
        recipe = replace(recipe, flags=(*recipe.flags, "--max_train_steps", str(steps)))
    return recipe if seeds is None else replace(recipe, seeds=recipe.seeds[:seeds])


def run_directories(save_dir: str) -> dict[str, str]:
    """{save_prefix: run directory} of the runs under save_dir (the furthest trained where two share one)."""
    found: dict[str, str] = {}
    for args_path in sorted(glob.glob(os.path.join(save_dir, "*", "args.json"))):
        path = os.path.dirname(args_path)
        prefix = read_args(path).get("save_prefix")
        if prefix not in found or last_step(path) > last_step(found[prefix]):
            found[prefix] = path
    return found


def last_step(run_dir: str) -> int:
    """The step of the run's latest checkpoint; -1 before its first."""
    steps = checkpoint_steps(run_dir)
    return steps[-1] if steps else -1


def progress(recipe: Recipe, save_dir: str) -> dict[tuple[str, int], int]:
    """{(condition, seed): the step its latest checkpoint reached, -1 where none}."""
    found = run_directories(save_dir)
    return {(c, seed): last_step(found[seeded(c, seed)]) if seeded(c, seed) in found else -1
            for c in recipe.conditions for seed in recipe.seeds}
