"""Every checkpoint read and written: ours (`checkpoint_{step}.pth`, resumable), the research code's
`.pth` and raw `.pickle` state dicts, and the model rebuilt from any of them (`load_model`).

Our checkpoints put the research keys (`model_state_dict` in `model.`-prefixed research names,
`scheduler_state_dict`) first; the rest is what an exact resume needs, and the run's arguments
and vocabulary, so that a checkpoint alone rebuilds its model. Everything is tensors, numbers,
strings and containers, so it loads with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, replace
from typing import Mapping

import torch
import torch.nn as nn

from config import Config, build_parser, config_from_args, read_args
from data_utils.load import task_vocabulary
from interfaces import Objective, make_objective
from transformer_helpers import create_model
from util import HierGenError, atomic_open, remove_temporaries
from vocabulary import WordVocabulary

FORMAT = "hier_gen/1"
RESUME_KEYS = ("model_state_dict", "scheduler_state_dict", "optimizer_state_dict", "step", "sampler_state",
               "rng_state", "best", "wandb_id", "vocab", "args")
PREFIX = "model."  # research checkpoints nest the LM under `model`
DECODER_PREFIX = "trafo.decoder."  # in research LM checkpoints: never-used decoder layers
GATE_KEY = ".gate."  # head-gate parameters and buffers of the gated LM
_NAME = re.compile(r"checkpoint_(\d+)\.pth$")
_ANY_NAME = re.compile(r"checkpoint_(\d+)\.(pth|pickle)$")  # the research code's older runs: .pickle
StateDict = Mapping[str, torch.Tensor]


# ---- reading any checkpoint file ----

def load_checkpoint_file(path: str | os.PathLike) -> dict:
    """torch.load a checkpoint safely (tensors only, on CPU); HierGenError if it cannot be read."""
    if not os.path.exists(path):
        raise HierGenError(f"checkpoint {path} does not exist")
    if not os.path.isfile(path):
        raise HierGenError(f"checkpoint {path} is not a file")
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except OSError as e:
        raise HierGenError(f"cannot read checkpoint {path}: {e.strerror}") from None
    # torch.load reports malformed input with many unrelated exception types.
    except Exception as e:
        if "GLOBAL" in str(e):
            raise HierGenError(f"checkpoint {path} holds pickled code or objects other than "
                               "tensors; refusing to load it") from None
        raise HierGenError(f"{path} is not a readable PyTorch checkpoint "
                           "(truncated, corrupt or another kind of file)") from None
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise HierGenError(f"{path} is not a checkpoint: it holds a {kind}, not a dict")
    return loaded


def load_model_weights(model: nn.Module, source: str | os.PathLike | Mapping,
                       path: str | os.PathLike | None = None) -> None:
    """Load weights from our or a research checkpoint, a raw research state dict, or a loaded dict
    (read from `path`, named in errors).

    Keys may carry one leading `model.`; `trafo.decoder.*` keys are ignored unless the model has
    a decoder (research LM checkpoints carry unused ones). A gated LM may load an ungated LM's
    weights: its gates then keep their fresh (open) values, for pruning a trained LM.
    """
    if not isinstance(source, Mapping):
        path = source
    name = "state dict" if path is None else f"checkpoint {path}"
    loaded = source if isinstance(source, Mapping) else load_checkpoint_file(source)
    state = loaded.get("model_state_dict", loaded)
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise HierGenError(f"{name} holds no model state dict (names → tensors)")
    state = {_strip_prefix(k): v for k, v in state.items()}
    expected = model.state_dict()
    if not any(k.startswith(DECODER_PREFIX) for k in expected):
        state = {k: v for k, v in state.items() if not k.startswith(DECODER_PREFIX)}
    keep_fresh_gates = not any(GATE_KEY in k for k in state)
    if keep_fresh_gates:
        expected = {k: v for k, v in expected.items() if GATE_KEY not in k}
    _check_fits(expected, state, name)
    model.load_state_dict(state, strict=not keep_fresh_gates)


def research_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with `model.`-prefixed keys, as a checkpoint's `model_state_dict`."""
    return {PREFIX + key: value for key, value in model.state_dict().items()}


def _strip_prefix(key: str) -> str:
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


def _check_fits(expected: StateDict, state: StateDict, name: str) -> None:
    """Raise a one-line HierGenError saying how `state` differs from the model's own `expected`."""
    rows = expected["input_embedding.weight"].shape[0]
    if "input_embedding.weight" in state and state["input_embedding.weight"].shape[0] != rows:
        raise HierGenError(f"{name} has {state['input_embedding.weight'].shape[0]} token rows, "
                           f"this vocabulary needs {rows} (different vocabulary)")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = [f"{label} keys {_few(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected)) if keys]
        raise HierGenError(f"{name} does not fit this model: {'; '.join(parts)}")
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise HierGenError(f"{name} does not fit this model: {key} has shape "
                               f"{list(state[key].shape)}, the model needs {list(value.shape)}")
        if state[key].is_floating_point() and not torch.isfinite(state[key]).all():
            raise HierGenError(f"{name} is damaged: {key} holds NaN or infinite values")


def _few(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown} (+{len(keys) - limit} more)"


def check_vocabulary(loaded: Mapping, vocab: WordVocabulary, path: str | os.PathLike) -> None:
    """A checkpoint that records its vocabulary (ours) must have been trained on this one."""
    saved = loaded.get("vocab")
    if saved is not None and list(saved) != vocab.words:
        raise HierGenError(f"{path}: checkpoint vocabulary differs from the vocabulary of this dataset")


# ---- a model rebuilt from a checkpoint ----

@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, in eval mode on its device, with what evaluating it needs."""

    model: nn.Module
    objective: Objective
    vocab: WordVocabulary
    config: Config
    step: int | None  # the training step it was saved at, when the checkpoint says


def load_model(path: str | os.PathLike, flags: list[str] | None = None, data_dir: str | None = None,
               device: str = "cpu") -> LoadedModel:
    """Rebuild the model of a checkpoint: ours, a research `.pth`, or a raw `.pickle` state dict.

    Its arguments are `flags` (a train_transformers.py command line) when given, else those saved in
    the checkpoint (ours), else the `args.json` of its run beside it (the research code's). The
    vocabulary is the dataset's (checked against the checkpoint's own, when it records one);
    `data_dir` replaces the recorded one.
    """
    loaded = load_checkpoint_file(path)
    cfg = _arguments(loaded, path, flags, device)
    if data_dir is not None:
        cfg = replace(cfg, data=replace(cfg.data, data_dir=data_dir))
    vocab = task_vocabulary(cfg.data.dataset)
    check_vocabulary(loaded, vocab, path)
    model = create_model(cfg.model, len(vocab))
    load_model_weights(model, loaded, path)
    model.to(device).eval()
    return LoadedModel(model, make_objective(cfg.model, model, cfg.objective), vocab, cfg, _saved_step(loaded))


def _arguments(loaded: dict, path: str | os.PathLike, flags: list[str] | None, device: str) -> Config:
    if flags is not None:
        return config_from_args(vars(build_parser().parse_args(flags)), {}, device, "flags")
    if isinstance(loaded.get("args"), dict):
        return config_from_args(loaded["args"], {}, device, f"{path}: saved arguments")
    run_dir = os.path.dirname(os.path.abspath(path))
    if not os.path.isfile(os.path.join(run_dir, "args.json")):
        raise HierGenError(f"{path} records no arguments and there is no args.json beside it: "
                           "pass the flags of the run that saved it")
    return config_from_args(read_args(run_dir), {}, device, f"{run_dir}/args.json")


def _saved_step(loaded: dict) -> int | None:
    if isinstance(loaded.get("step"), int):
        return loaded["step"]
    schedule = loaded.get("scheduler_state_dict")
    step = schedule.get("last_epoch") if isinstance(schedule, dict) else None
    return step if isinstance(step, int) else None


# ---- our training checkpoints ----

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


def checkpoint_files(run_dir: str) -> dict[int, str]:
    """Every checkpoint of a run directory, ours or the research code's (`checkpoint_{step}.pth` or
    `.pickle`), by step, ascending; HierGenError when it has none."""
    found = {int(m.group(1)): os.path.join(run_dir, name)
             for name in os.listdir(run_dir) if (m := _ANY_NAME.fullmatch(name))}
    if not found:
        raise HierGenError(f"{run_dir}: no checkpoint (checkpoint_{{step}}.pth or .pickle) to analyse")
    return dict(sorted(found.items()))


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
    """The generators training draws from (dropout, head gates): torch's, and CUDA's where present.

    Batch order has its own generator (the sampler's state); nothing draws from Python's or
    NumPy's global generators, so they are neither seeded nor saved.
    """
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore `rng_state()` (checkpoints of earlier versions also hold Python's and NumPy's: unused)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
