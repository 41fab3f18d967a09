"""The command line of train_transformers.py, parsed and validated once into a typed Config.

Flag names, spellings and defaults are those of the research code (users bring its commands and
SLURM scripts); the rest of the code receives a Config and never reads argparse or os.environ.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import math
import os
import re
from dataclasses import dataclass, fields

from data_utils.config import DataConfig, add_data_arguments
from data_utils.registry import check_eval_splits
from interfaces.objective import DEFAULT_L0_PENALTY, ObjectiveConfig
from transformer_helpers import ModelConfig
from util import HierGenError, Parser, check_folder_can_be_made

WANDB_MODES = ("online", "offline", "disabled")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, evaluation, output and logging settings."""

    seed: int
    seeds: tuple[int, ...]
    batch_size: int
    lr: float
    weight_decay: float
    num_warmup_steps: int
    max_grad_norm: float
    no_decay_lr: bool
    max_train_steps: int
    continue_lr: bool
    model_load_path: str
    resume: bool
    callback: bool
    eval_keys: tuple[str, ...]
    eval_every: int
    eval_batch_size: int
    save_every: int
    no_weight_stats: bool
    save_dir: str | None
    save_prefix: str | None
    device: str
    bf16: bool
    compile: bool
    run_name: str | None
    wandb_mode: str
    wandb_entity: str | None
    slurm_job_id: str | None  # from the environment, not a flag


@dataclass(frozen=True)
class Config:
    data: DataConfig
    model: ModelConfig
    objective: ObjectiveConfig
    train: TrainConfig

    @property
    def args(self) -> dict:
        """Every flag under its argparse name, as the command line of exactly this run would give it:
        args.json, the W&B config and what a resumed run is compared with."""
        t = dataclasses.asdict(self.train)
        t.update(seeds=",".join(map(str, self.train.seeds)), eval_keys=",".join(self.train.eval_keys),
                 gpu_id=int(self.train.device.partition(":")[2] or 0))
        values = {**dataclasses.asdict(self.data), **dataclasses.asdict(self.model),
                  **dataclasses.asdict(self.objective), **t}
        return {name: values[name] for name in flag_defaults()}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(description="Train a transformer LM on question formation or tense inflection.")
    m = p.add_argument_group("model")
    m.add_argument("--vec_dim", type=int, default=512, help="model width")
    m.add_argument("--n_heads", type=int, default=8, help="attention heads")
    m.add_argument("--ff_multiplier", type=int, default=4, help="feed-forward width = multiplier x vec_dim")
    m.add_argument("--encoder_n_layers", type=int, default=6, help="LM layers")
    m.add_argument("--decoder_n_layers", type=int, default=2, help="decoder layers (enc_dec seq2seq only)")
    m.add_argument("--mode", default="enc_dec", choices=["enc_dec", "enc"],
                   help="enc_dec = the LM (or seq2seq with --not_lm), enc = classifier")
    m.add_argument("--not_lm", action="store_true", help="seq2seq encoder-decoder instead of the LM")
    m.add_argument("--tied-embedding", action="store_true", help="tie input embedding and output projection")
    m.add_argument("--gated-model", action="store_true", help="attention heads with L0 gates")
    m.add_argument("--gate_l0_penalty", type=float, default=DEFAULT_L0_PENALTY,
                   help="gated LM: loss = LM loss + penalty x sum over heads of P(gate open)")
    m.add_argument("--dropout", type=float, default=0.1, help="dropout everywhere")
    m.add_argument("--no-pos-enc", action="store_true", help="no positional encoding")
    m.add_argument("--pos_scale", type=float, default=1.0, help="scale of the positional encoding")
    m.add_argument("--causal_encoder", action="store_true", help="causal mask in the classifier encoder")
    m.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the training loss")
    m.add_argument("--is_prefix_lm", action="store_true", help="loss only on the output half")

    add_data_arguments(p.add_argument_group("data"))

    t = p.add_argument_group("training")
    t.add_argument("--seed", type=int, default=42, help="training seed (model init, batch order, dropout)")
    t.add_argument("--seeds", default="", help="train these seeds at once (e.g. 42,43,44; replaces --seed): "
                   "each gets the run directory {save_prefix}_seed{N} and W&B run {run_name}_seed{N}")
    t.add_argument("--batch_size", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--weight_decay", type=float, default=0.0)
    t.add_argument("--num_warmup_steps", type=int, default=10000)
    t.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient-norm clipping; 0 = none")
    t.add_argument("--no_decay_lr", action="store_true", help="constant lr after warmup")
    t.add_argument("--max_train_steps", type=int, default=200000,
                   help="number of optimizer updates; 0 = evaluate once and exit")
    t.add_argument("--model_load_path", default="", help="initialise from a checkpoint (ours or research)")
    t.add_argument("--continue_lr", action="store_true",
                   help="continue the lr schedule (and step count) of --model_load_path")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in its directory from its latest checkpoint (start it if none)")
    t.add_argument("--gpu_id", type=int, default=0, help="CUDA device index (with --device auto or cuda; "
                   "on a machine without CUDA, auto uses the CPU)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    t.add_argument("--bf16", action="store_true",
                   help="training forward passes under bfloat16 autocast (cuda, cpu); weights, "
                        "gradients, AdamW and evaluations stay fp32")
    t.add_argument("--compile", action="store_true",
                   help="torch.compile the model (single-seed runs; the first steps wait for compilation)")

    e = p.add_argument_group("evaluation and output")
    e.add_argument("--callback", action="store_true", help="compute the task accuracy at each evaluation")
    e.add_argument("--eval_keys", default="", help="comma-separated evaluation splits (default val,test)")
    e.add_argument("--eval_every", type=int, default=1000)
    # 32, not the research code's 256: a [lines·T, 4d] activation then stays in cache on a CPU.
    e.add_argument("--eval_batch_size", type=int, default=32, help="batch size of evaluation passes")
    e.add_argument("--no_weight_stats", action="store_true",
                   help="do not log the 14 weight statistics (weights/...) at each evaluation")
    e.add_argument("--save_every", type=int, default=10000)
    e.add_argument("--save_dir", default=None, help="where runs are written (nothing written when absent)")
    e.add_argument("--save_prefix", default=None, help="run directory name (under --save_dir)")
    e.add_argument("--run_name", default=None, help="W&B run name; no W&B logging without it")
    e.add_argument("--wandb_mode", default=None, choices=WANDB_MODES,
                   help="W&B mode (default: $WANDB_MODE or online)")
    e.add_argument("--wandb_entity", default=None, help="W&B entity (default: $WANDB_ENTITY)")
    return p


@functools.cache
def flag_defaults() -> dict:
    """Every flag's argparse name and default, in the order of `--help`."""
    return vars(build_parser().parse_args([]))


def parse_config(argv: list[str] | None = None, environ: dict | None = None) -> Config:
    """Parse and validate the command line of a run on this machine; raise HierGenError on anything
    that cannot work (flags, their combinations, the device, folders and files named)."""
    ns = build_parser().parse_args(argv)
    cfg = config_from_args(vars(ns), environ, device=device_name(ns.device, ns.gpu_id))
    if ns.save_dir is not None:
        check_folder_can_be_made(ns.save_dir, "--save_dir")
    if ns.model_load_path and not os.path.isfile(ns.model_load_path):
        raise HierGenError(f"--model_load_path {ns.model_load_path}: no such file (or not a file)")
    t = cfg.train
    if t.run_name and t.wandb_mode != "disabled" and importlib.util.find_spec("wandb") is None:
        raise HierGenError("--run_name logs to W&B, but wandb is not installed: pip install wandb, "
                           "or add --wandb_mode disabled")
    return cfg


def config_from_args(args: dict, environ: dict | None = None, device: str | None = None,
                     source: str = "arguments") -> Config:
    """The Config of recorded arguments (a parsed command line, args.json, a checkpoint's `args`):
    missing flags take their defaults; unknown flags and values that cannot work are refused.

    `device` replaces the recorded one, which is not checked against this machine (a run's
    arguments are read on other machines too). `source` names the arguments in errors.
    """
    unknown = sorted(set(args) - set(flag_defaults()))
    if unknown:
        raise HierGenError(f"{source}: unknown flags {', '.join('--' + k for k in unknown)}")
    ns = argparse.Namespace(**{**flag_defaults(), **args})
    environ = dict(os.environ if environ is None else environ)
    _check_training_flags(ns)
    model = ModelConfig(**{f.name: getattr(ns, f.name) for f in fields(ModelConfig)})
    objective = ObjectiveConfig(**{f.name: getattr(ns, f.name) for f in fields(ObjectiveConfig)})
    objective.check(model)
    train = TrainConfig(
        seed=ns.seed, seeds=_seed_list(ns.seeds), batch_size=ns.batch_size, lr=ns.lr, weight_decay=ns.weight_decay,
        num_warmup_steps=ns.num_warmup_steps, max_grad_norm=ns.max_grad_norm,
        no_decay_lr=ns.no_decay_lr, max_train_steps=ns.max_train_steps,
        continue_lr=ns.continue_lr, model_load_path=ns.model_load_path, resume=ns.resume,
        callback=ns.callback, eval_keys=_eval_keys(ns.eval_keys, ns.dataset),
        eval_every=ns.eval_every, eval_batch_size=ns.eval_batch_size, save_every=ns.save_every,
        no_weight_stats=ns.no_weight_stats,
        save_dir=ns.save_dir, save_prefix=ns.save_prefix,
        device=device or ns.device, bf16=ns.bf16, compile=ns.compile,
        run_name=ns.run_name,
        wandb_mode=ns.wandb_mode or environ.get("WANDB_MODE") or "online",
        wandb_entity=ns.wandb_entity or environ.get("WANDB_ENTITY"),
        slurm_job_id=environ.get("SLURM_JOB_ID"),
    )
    if train.bf16 and train.device.partition(":")[0] not in ("cuda", "cpu"):
        raise HierGenError(f"--bf16 runs on cuda or cpu, not on {train.device}")
    if train.compile and train.seeds:
        raise HierGenError("--compile is for single-seed runs; --seeds trains through torch.func.vmap")
    if train.seeds and (model.family != "lm" or model.gated_model):
        raise HierGenError("--seeds trains LMs (plain or prefix) only")
    if train.wandb_mode not in WANDB_MODES:
        raise HierGenError(f"WANDB_MODE={train.wandb_mode!r}: expected one of {', '.join(WANDB_MODES)}")
    return Config(DataConfig.from_namespace(ns), model, objective, train)


def read_args(run_dir: str) -> dict:
    """The arguments recorded in a run directory's args.json (ours or the research code's)."""
    try:
        with open(os.path.join(run_dir, "args.json"), "rb") as f:
            args = json.load(f)
    except ValueError as e:  # not JSON, or not UTF-8 text
        raise HierGenError(f"{run_dir}/args.json is not valid JSON ({e})") from None
    if not isinstance(args, dict):
        raise HierGenError(f"{run_dir}/args.json does not hold an object of arguments")
    return args


def seeded(name: str, seed: int) -> str:
    """The name of seed `seed` of a `--seeds` run named `name`: `{name}_seed{N}`."""
    return f"{name}_seed{seed}"


def unseeded(name: str) -> str:
    """`name` without the `_seed{N}` that seeded appends."""
    return re.sub(r"_seed\d+$", "", name)


def seed_config(cfg: Config, seed: int) -> Config:
    """Seed `seed` of a `--seeds` run as its own single-seed run: its seed, run directory
    `{save_prefix}_seed{N}` and W&B run `{run_name}_seed{N}` (so that it can also continue alone)."""
    def own(name: str | None) -> str | None:
        return seeded(name, seed) if name else name

    t = cfg.train
    train = dataclasses.replace(t, seed=seed, seeds=(), save_prefix=own(t.save_prefix), run_name=own(t.run_name))
    return dataclasses.replace(cfg, train=train)


def _check_training_flags(ns: argparse.Namespace) -> None:
    _require(math.isfinite(ns.pos_scale), "--pos_scale must be finite")
    _require(ns.batch_size >= 1, f"--batch_size must be at least 1 (got {ns.batch_size})")
    _require(ns.eval_batch_size >= 1, "--eval_batch_size must be at least 1")
    _require(math.isfinite(ns.lr) and ns.lr >= 0, f"--lr must be a non-negative number (got {ns.lr})")
    _require(math.isfinite(ns.weight_decay) and ns.weight_decay >= 0, "--weight_decay must be >= 0")
    _require(ns.num_warmup_steps >= 0, "--num_warmup_steps must be >= 0")
    _require(math.isfinite(ns.max_grad_norm) and ns.max_grad_norm >= 0, "--max_grad_norm must be >= 0")
    _require(ns.max_train_steps >= 0, "--max_train_steps must be >= 0")
    _require(ns.eval_every >= 1, f"--eval_every must be at least 1 (got {ns.eval_every})")
    _require(ns.save_every >= 1, f"--save_every must be at least 1 (got {ns.save_every})")
    _require(not ns.continue_lr or ns.model_load_path, "--continue_lr needs --model_load_path")
    _require(ns.save_prefix is None or ns.save_dir is not None, "--save_prefix needs --save_dir")
    _require(not ns.resume or ns.save_dir is not None, "--resume needs --save_dir")
    check_seed("--seed", ns.seed)
    _require(ns.run_name is None or ns.run_name.strip() != "", "--run_name is empty; give a name or leave it out")
    if ns.save_prefix is not None:
        _require(ns.save_prefix not in ("", ".", "..") and os.path.basename(ns.save_prefix) == ns.save_prefix,
                 f"--save_prefix {ns.save_prefix!r} must name one directory inside --save_dir")


def _seed_list(text: str) -> tuple[int, ...]:
    """`--seeds 42,43,44` as (42, 43, 44); empty: one seed (--seed)."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise HierGenError(f"--seeds wants comma-separated integers, got {text!r}") from None
    if text.strip() and not seeds:
        raise HierGenError(f"--seeds {text!r} names no seed")
    if len(set(seeds)) != len(seeds):
        raise HierGenError(f"--seeds lists a seed twice: {text}")
    for seed in seeds:
        check_seed("--seeds", seed)
    return seeds


def check_seed(flag: str, seed: int) -> None:
    """The research code seeds NumPy too, which takes 0 .. 2^32 - 1: a run's seed must mean the
    same there."""
    _require(0 <= seed < 2**32, f"{flag} must be between 0 and {2**32 - 1} (got {seed})")


def _eval_keys(text: str, dataset: str) -> tuple[str, ...]:
    """`--eval_keys val,test_rc` as ("val", "test_rc"); empty: val and test."""
    if not text.strip():
        return ("val", "test")
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise HierGenError(f"--eval_keys {text!r} names no split")
    if len(set(keys)) != len(keys):
        raise HierGenError(f"--eval_keys lists a split twice: {text}")
    check_eval_splits(dataset, list(keys))
    return keys


def device_name(device: str, gpu_id: int) -> str:
    """Resolve --device/--gpu_id to a torch device string, refusing devices this machine lacks and
    a --gpu_id other than 0 that would be ignored."""
    import torch

    _require(gpu_id >= 0, f"--gpu_id must be >= 0 (got {gpu_id})")
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if gpu_id and device != "cuda":
        raise HierGenError(f"--gpu_id {gpu_id} would be ignored: it picks a CUDA device with --device auto or "
                           f"cuda, and this run uses {device}")
    if device == "cuda":
        device = f"cuda:{gpu_id}"
    if device.startswith("cuda"):
        index = device.partition(":")[2]
        if not torch.cuda.is_available():
            raise HierGenError(f"--device {device}: CUDA is not available on this machine")
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise HierGenError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    if device == "mps" and not torch.backends.mps.is_available():
        raise HierGenError("--device mps: MPS is not available on this machine")
    if device not in ("cpu", "mps"):
        raise HierGenError(f"--device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise HierGenError(message)
