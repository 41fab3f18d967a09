"""Training checkpoints: `checkpoint_{step}.pth`, readable by the research tools and by ours.

The research keys (`model_state_dict` in `model.`-prefixed research names, `scheduler_state_dict`)
come first; the rest is what an exact resume needs. Everything is tensors, numbers, strings and
containers, so it loads with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
import random
import re
import sys

import numpy as np
import torch

from transformer_helpers import load_checkpoint_file, research_state_dict
from util import HierGenError, atomic_open, remove_temporaries

FORMAT = "hier_gen/1"
RESUME_KEYS = ("model_state_dict", "scheduler_state_dict", "optimizer_state_dict", "step", "sampler_state",
               "rng_state", "best", "wandb_id", "vocab", "args")
_NAME = re.compile(r"checkpoint_(\d+)\.pth$")


def checkpoint_path(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, f"checkpoint_{step}.pth")


def save_checkpoint(path: str, *, model, optimizer, scheduler, step: int, sampler_state: dict,
                    best: dict[str, float], wandb_id: str | None, vocab_words: list[str],
                    args: dict) -> None:
    state = {
        "model_state_dict": research_state_dict(model),
        "scheduler_state_dict": scheduler.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "step": step,
        "sampler_state": sampler_state,
        "rng_state": rng_state(),
        "best": dict(best),
        "wandb_id": wandb_id,
        "vocab": list(vocab_words),
        "args": args,
        "format": FORMAT,
    }
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def latest_checkpoint(run_dir: str) -> tuple[str, dict] | None:
    """The newest readable checkpoint of a run directory (None if it has none yet), after removing
    leftovers of torn writes.

    Saves are atomic, so a newer file that does not load was damaged afterwards (disk trouble);
    it is reported and the previous one is used. A run none of whose checkpoints loads is refused.
    """
    remove_temporaries(run_dir)
    problems = []
    for step in reversed(checkpoint_steps(run_dir)):
        path = checkpoint_path(run_dir, step)
        try:
            state = load_training_checkpoint(path)
        except HierGenError as e:
            problems.append(str(e))
            continue
        for problem in problems:
            print(f"warning: skipping {problem}", file=sys.stderr)
        return path, state
    if problems:
        raise HierGenError(f"run directory {run_dir}: no checkpoint in it can be read, so --resume cannot "
                           f"continue it (newest: {problems[0]})")
    return None


def checkpoint_steps(run_dir: str) -> list[int]:
    """Steps of the complete checkpoints in a run directory, ascending (temporaries ignored)."""
    return sorted(int(m.group(1)) for name in os.listdir(run_dir) if (m := _NAME.fullmatch(name)))


def load_training_checkpoint(path: str) -> dict:
    """A checkpoint written by this project (all resume keys present)."""
    state = load_checkpoint_file(path)
    if state.get("format") != FORMAT:
        raise HierGenError(f"{path}: not a checkpoint written by hier_gen (cannot resume from it)")
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise HierGenError(f"{path}: damaged hier_gen checkpoint, without {', '.join(missing)}")
    return state


def rng_state() -> dict:
    """Python, NumPy and torch generator states in weights_only-loadable form."""
    version, mt, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [version, list(mt), gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
