"""What a run is made of: its batch order, optimiser, schedule and clipping, its directory, and its
state (`Run`: model, objective, optimizer, logging, evaluation, checkpoints) with its own training
step. The loop that drives runs is `trainer.Trainer`."""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass

import torch

from checkpoint import (check_vocabulary, checkpoint_path, checkpoint_steps, latest_checkpoint, load_checkpoint_file,
                        load_model_weights, save_checkpoint, set_rng_state)
from collate import collate
from config import Config, config_from_args, seed_config
from data_utils.load import TaskData
from evaluation import evaluate, make_eval_batches
from interfaces import make_objective
from models.weight_statistics import weight_statistics
from run_logging import RunLogger, metrics_until
from sequence import Sequence, encode
from transformer_helpers import create_model
from util import HierGenError, RunFailed, atomic_write_text

RUN_FILES = {"args.json", "metrics.jsonl", "wandb"}  # what a run writes besides its checkpoints
# Flags that may differ between a run and its resumption: they do not change what is computed
# (a run directory may move to another --save_dir).
RESUMABLE_CHANGES = {"resume", "device", "gpu_id", "wandb_mode", "wandb_entity", "data_dir",
                     "eval_batch_size", "save_dir", "no_weight_stats"}


class EpochSampler:
    """Uniformly random order, reshuffled each epoch, last partial batch kept.

    Its own generator (seeded from --seed) makes the batch order independent of model
    initialisation and dropout, and lets a checkpoint restore it exactly.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.arange(0)
        self.pos = 0

    def next_indices(self) -> list[int]:
        if self.pos >= len(self.perm):
            self.perm = torch.randperm(self.n, generator=self.generator)
            self.pos = 0
        indices = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += len(indices)
        return indices.tolist()

    def state_dict(self) -> dict:
        return {"perm": self.perm.clone(), "pos": self.pos, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.perm, self.pos = state["perm"], state["pos"]
        self.generator.set_state(state["generator"])


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                   params: list[torch.Tensor] | None = None) -> torch.optim.AdamW:
    """AdamW with eps 1e-7; biases and LayerNorm parameters (all 1-d tensors) are never decayed.

    `params` replaces the model's own, one for one (multi-seed training passes [S, ...] stacks;
    AdamW is elementwise, so each seed's slice is updated exactly as alone).
    The fused kernel updates each tensor in one pass instead of one pass per arithmetic step, which
    is what counts on the CPU, where the update of 19M parameters is memory-bound.
    """
    own = list(model.parameters())
    params = own if params is None else params
    decayed = [own_p.ndim >= 2 for own_p in own]
    groups = [{"params": [p for p, d in zip(params, decayed) if d], "weight_decay": weight_decay},
              {"params": [p for p, d in zip(params, decayed) if not d], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-7, fused=True)


def make_scheduler(optimizer, cfg: Config):
    """Linear warmup, then linear decay to 0 at max_train_steps (or constant): as the research code."""
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    t = cfg.train
    if t.no_decay_lr:
        return get_constant_schedule_with_warmup(optimizer, t.num_warmup_steps)
    return get_linear_schedule_with_warmup(optimizer, t.num_warmup_steps, max(t.max_train_steps, 1))


def set_scheduled_lr(optimizer: torch.optim.Optimizer, scheduler) -> None:
    """A schedule's loaded state does not reach its optimizer: set the lr it says for this step."""
    for group in optimizer.param_groups:
        group["lr"] = scheduler.get_last_lr()[0]


def clip_gradients(grads: list[torch.Tensor], max_norm: float, stacked: bool = False) -> torch.Tensor:
    """Scale the gradients in place so that their total norm is at most max_norm (when > 0), as
    `clip_grad_norm_` does; returns the norm before clipping (what is logged).

    With `stacked`, every gradient is [S, ...], S runs' gradients in one tensor (--seeds): each run
    is clipped by its own norm, and the [S] norms are returned.
    """
    per_tensor = [g.flatten(1 if stacked else 0).norm(dim=-1) for g in grads]
    norms = torch.linalg.vector_norm(torch.stack(per_tensor), dim=0)
    if max_norm > 0:
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.ndim - 1)) if stacked else scale)
    return norms


def seed_everything(seed: int) -> None:
    """Seed the generator of model initialisation, dropout and head gates (torch's)."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN, a debugging aid that costs about 500
    # fills per CPU training step; every tensor here is written before it is read.
    torch.utils.deterministic.fill_uninitialized_memory = False


def training_precision(cfg: Config, device: torch.device) -> torch.autocast:
    """The context of training forward passes: bf16 autocast with --bf16, else plain fp32."""
    return torch.autocast(device.type, torch.bfloat16, enabled=cfg.train.bf16)


@dataclass
class StepRecord:
    """What one training step of one run logs. The values stay on the device until `Run.log_steps`
    reads a batch of records in one transfer."""

    step: int  # the step count after the update
    lr: float  # the learning rate the update used
    values: dict[str, torch.Tensor]  # loss, grad_norm (and the gated LM's l0), 0-d tensors


def run_directory(cfg: Config) -> str | None:
    """`{save_dir}/{save_prefix}[_{SLURM_JOB_ID}]`; two runs never share one silently.

    Without --save_prefix the name is made unique by a timestamp (or the SLURM job id, so that a
    requeued job finds its directory again).
    """
    t = cfg.train
    if t.save_dir is None:
        return None
    if t.resume and not (t.save_prefix or t.slurm_job_id):
        raise HierGenError("--resume needs --save_prefix (outside SLURM) to find the run directory")
    name = t.save_prefix or f"{cfg.data.dataset}_seed{t.seed}"
    if t.slurm_job_id:
        name = f"{name}_{t.slurm_job_id}"
    elif not t.save_prefix:
        name = f"{name}_{time.strftime('%Y%m%d-%H%M%S')}"
    path = os.path.join(t.save_dir, name)
    if os.path.exists(path) and not os.path.isdir(path):
        raise HierGenError(f"run directory {path} is a file")
    if not t.resume and os.path.exists(path) and os.listdir(path):
        raise HierGenError(f"run directory {path} already holds files; choose another --save_prefix "
                           "or continue it with --resume")
    if t.resume and os.path.isdir(path) and not checkpoint_steps(path):
        # Starting the run here would overwrite files: only a run stopped before its first
        # checkpoint may be started again in place.
        foreign = sorted(n for n in os.listdir(path) if n not in RUN_FILES and not n.startswith("."))
        if foreign:
            raise HierGenError(f"--resume: {path} has no checkpoint and holds files that are not a run's "
                               f"({', '.join(foreign[:3])}); choose another --save_prefix")
    return path


class Run:
    """One run (one seed): its model, objective, optimizer, schedule and batch order, and what it
    writes (run directory, metrics, W&B run, checkpoints). Built from a Config, everything that
    can be refused is checked here, before any file is written; `--resume` restores its state."""

    def __init__(self, cfg: Config, task: TaskData):
        self.cfg, self.task = cfg, task
        t = cfg.train
        self.run_dir = run_directory(cfg)
        resumed = latest_checkpoint(self.run_dir) if t.resume and os.path.isdir(self.run_dir) else None
        loaded = load_checkpoint_file(t.model_load_path) if t.model_load_path and not resumed else None
        self.device = torch.device(t.device)
        seed_everything(t.seed)
        self.model = create_model(cfg.model, len(task.vocab))
        if loaded is not None:
            check_vocabulary(loaded, task.vocab, t.model_load_path)
            load_model_weights(self.model, loaded, t.model_load_path)
        self.model.to(self.device)
        if t.compile:
            self.model.compile()  # in place: the state-dict keys stay those of the plain model
        self.objective = make_objective(cfg.model, self.model, cfg.objective)
        self.optimizer = make_optimizer(self.model, t.lr, t.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.step = self._continue_lr(loaded) if t.continue_lr and loaded is not None else 0
        self.train_seqs: list[Sequence] = [encode(e, task.vocab) for e in task.train]
        self.sampler = EpochSampler(len(self.train_seqs), t.batch_size, t.seed)
        self.eval_batches = {split: make_eval_batches(examples, task.vocab, t.eval_batch_size)
                             for split, examples in task.eval.items()}
        self.best: dict[str, float] = {}
        self.wandb_id: str | None = None
        self.resumed = resumed is not None
        if resumed:
            self._restore(*resumed)
        # Events after the checkpoint we resume from are logged again by this run.
        self.kept_metrics = metrics_until(self._metrics_path(), self.step) if self.resumed else ""
        self.logger: RunLogger | None = None
        self.pending: list[StepRecord] = []  # steps not yet logged

    def _continue_lr(self, loaded: dict) -> int:
        """Start the schedule (and the step count) where the loaded checkpoint left it."""
        path = self.cfg.train.model_load_path
        schedule = loaded.get("scheduler_state_dict")
        step = schedule.get("last_epoch") if isinstance(schedule, dict) else None
        if not isinstance(step, int):
            raise HierGenError(f"{path}: has no scheduler state, so --continue_lr cannot continue it")
        if step >= self.cfg.train.max_train_steps:
            raise HierGenError(f"{path}: saved at step {step}, not before --max_train_steps "
                               f"{self.cfg.train.max_train_steps}")
        self.scheduler.last_epoch = step - 1
        with warnings.catch_warnings():
            # This step only positions the schedule; torch warns that no optimizer step came first.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        return step

    def _restore(self, path: str, state: dict) -> None:
        """Continue exactly where checkpoint `path` of this run left off."""
        saved = config_from_args(state["args"], {}, source=f"{path}: saved arguments")
        if saved.train.seeds:  # a seed of a --seeds run saved before seeds recorded their own arguments
            saved = seed_config(saved, saved.train.seed)
        recorded = saved.args
        changed = [k for k, value in self.cfg.args.items()
                   if k not in RESUMABLE_CHANGES and recorded[k] != value]
        if changed:
            raise HierGenError(f"{path}: the run was started with other values of "
                               f"{', '.join('--' + k for k in changed)}; resume it with the same flags")
        check_vocabulary(state, self.task.vocab, path)
        load_model_weights(self.model, state, path)
        self.optimizer.load_state_dict(state["optimizer_state_dict"])
        self.scheduler.load_state_dict(state["scheduler_state_dict"])
        self.sampler.load_state_dict(state["sampler_state"])
        set_rng_state(state["rng_state"])
        self.step, self.best, self.wandb_id = state["step"], dict(state["best"]), state["wandb_id"]
        print(f"resuming {self.run_dir} from step {self.step}", flush=True)

    def _metrics_path(self) -> str:
        return os.path.join(self.run_dir, "metrics.jsonl")

    def open(self) -> None:
        """Create (or, resuming, tidy) the run directory and start logging."""
        if self.run_dir:
            os.makedirs(self.run_dir, exist_ok=True)
            atomic_write_text(self._metrics_path(), self.kept_metrics)
            atomic_write_text(os.path.join(self.run_dir, "args.json"), json.dumps(self.cfg.args, indent=4))
        self.logger = RunLogger(self.cfg, self.run_dir, self.task.wandb_project, self.step, self.wandb_id)
        self.wandb_id = self.logger.wandb_id

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()

    def next_batch(self) -> list[Sequence]:
        return [self.train_seqs[i] for i in self.sampler.next_indices()]

    def train_step(self) -> StepRecord:
        """One update: forward, backward, clipping, AdamW, schedule; no host sync."""
        batch = collate(self.next_batch(), len(self.task.vocab) + 2).to(self.device)
        lr = self.scheduler.get_last_lr()[0]
        with training_precision(self.cfg, self.device):
            out = self.objective(batch)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        values = {"loss": out.loss.detach(), "grad_norm": clip_gradients(grads, self.cfg.train.max_grad_norm)}
        if out.l0 is not None:
            values["l0"] = out.l0
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return StepRecord(self.step, lr, values)

    def log_steps(self) -> None:
        """Read the pending steps' values off the device in one transfer and log them in order.

        Checking here rather than every step keeps the GPU free of host syncs; a non-finite value
        stops the run before the next checkpoint could save damaged weights.
        """
        if not self.pending:
            return
        names = list(self.pending[0].values)
        rows = torch.stack([torch.stack([r.values[n] for n in names]) for r in self.pending]).tolist()
        for record, row in zip(self.pending, rows):
            bad = [name for name, value in zip(names, row) if not math.isfinite(value)]
            if bad:
                self.logger.flush()
                raise RunFailed(f"non-finite {' and '.join(bad)} at step {record.step}; stopping "
                                f"({kept_checkpoint(self.run_dir)})")
            self.logger.log({**dict(zip(names, row)), "lr": record.lr, "iteration": record.step}, record.step)
        self.logger.progress(self.pending[-1].step, rows[-1][0])
        self.pending.clear()

    def evaluate(self) -> dict[str, float]:
        """Evaluate every split and the weight statistics, log the metrics and print their summary
        line; returns the metrics."""
        metrics: dict[str, float] = {}
        for split, batches in self.eval_batches.items():
            result = evaluate(self.objective, batches, self.device)
            self.best[split] = min(self.best.get(split, float("inf")), result.loss)
            metrics.update(result.metrics(split, self.cfg.train.callback))
            metrics[f"best/{split}"] = self.best[split]
        if not self.cfg.train.no_weight_stats:
            metrics.update(weight_statistics(self.model))
        metrics["iteration"] = self.step
        self.logger.log(metrics, self.step)
        _print_summary(self.step, metrics)
        return metrics

    def save(self) -> None:
        """Make the logged events durable, then write the checkpoint (atomically)."""
        self.logger.flush(durable=True)
        if not self.run_dir:
            return
        save_checkpoint(checkpoint_path(self.run_dir, self.step), model=self.model,
                        optimizer=self.optimizer, scheduler=self.scheduler, step=self.step,
                        sampler_state=self.sampler.state_dict(), best=self.best,
                        wandb_id=self.wandb_id, vocab_words=self.task.vocab.words, args=self.cfg.args)


def kept_checkpoint(run_dir: str | None) -> str:
    saved = checkpoint_steps(run_dir) if run_dir and os.path.isdir(run_dir) else []
    if not saved:
        return "no checkpoint was saved"
    return f"last good checkpoint: {checkpoint_path(run_dir, saved[-1])}"


def _print_summary(step: int, metrics: dict[str, float]) -> None:
    """One line per evaluation: losses and task accuracies (per-type details stay in the logs)."""
    shown = [f"{k}={v:.4f}" for k, v in metrics.items()
             if k.startswith("curr-") and k.endswith("-ppl") or k.endswith("_aux")]
    print(f"step {step}: " + " ".join(shown), flush=True)
