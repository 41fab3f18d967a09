"""The training loop: data order, optimiser, schedule, evaluation, checkpoints and logging."""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import subprocess
import time
import warnings
from typing import Callable, Iterator

import numpy as np
import torch

from checkpoint import checkpoint_path, checkpoint_steps, latest_checkpoint, save_checkpoint, set_rng_state
from collate import collate
from config import Config, seed_args
from data_utils.load import TaskData, load_task
from evaluation import SplitResult, evaluate, make_eval_batches
from run_logging import RunLogger, metrics_until
from sequence import Sequence, encode
from transformer_helpers import create_model, create_model_interface, load_checkpoint_file, load_model_weights
from util import HierGenError, Preempted, RunFailed, atomic_write_text

TRAIN_LOG_FLUSH = 100  # training-step metrics are read off the device in chunks, not every step
# Checkpoint at the next step boundary and exit; on REQUEUE_SIGNAL (SLURM's time-limit warning)
# also requeue the job. TERM does not requeue: `scancel` must stop a job, and SLURM requeues the
# jobs it preempts by itself.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
REQUEUE_SIGNAL = signal.SIGUSR1
RUN_FILES = {"args.json", "metrics.jsonl", "wandb"}  # what a run writes besides its checkpoints
# Flags that may differ between a run and its resumption: they do not change what is computed
# (a run directory may move to another --save_dir).
RESUMABLE_CHANGES = {"resume", "device", "gpu_id", "wandb_mode", "wandb_entity", "data_dir",
                     "eval_batch_size", "save_dir"}


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
    The fused kernel updates each tensor in one pass instead of one pass per arithmetic step:
    three times faster on the CPU, where the update of 19M parameters is memory-bound.
    """
    own = list(model.parameters())
    params = own if params is None else params
    decayed = [own_p.ndim >= 2 for own_p in own]
    groups = [{"params": [p for p, d in zip(params, decayed) if d], "weight_decay": weight_decay},
              {"params": [p for p, d in zip(params, decayed) if not d], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-7, fused=True)


def make_scheduler(optimizer, num_warmup_steps: int, max_train_steps: int, no_decay_lr: bool):
    """Linear warmup, then linear decay to 0 at max_train_steps (or constant): as the research code."""
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    if no_decay_lr:
        return get_constant_schedule_with_warmup(optimizer, num_warmup_steps)
    return get_linear_schedule_with_warmup(optimizer, num_warmup_steps, max(max_train_steps, 1))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN, a debugging aid that costs about 500
    # fills per CPU training step; every tensor here is written before it is read.
    torch.utils.deterministic.fill_uninitialized_memory = False


def training_precision(cfg: Config, device: torch.device) -> torch.autocast:
    """The context of training forward passes: bf16 autocast with --bf16, else plain fp32."""
    return torch.autocast(device.type, torch.bfloat16, enabled=cfg.train.bf16)


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


class StopRequest:
    """Records SIGTERM/SIGUSR1 so that the loop can checkpoint at the next step boundary."""

    def __init__(self):
        self.signum: int | None = None
        self.previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class Trainer:
    """One run: built from a Config (everything that can be refused is checked here, before any
    file is written), then `run()`."""

    def __init__(self, cfg: Config, task: TaskData | None = None):
        self.cfg = cfg
        t = cfg.train
        self.run_dir = run_directory(cfg)
        resumed = latest_checkpoint(self.run_dir) if t.resume and os.path.isdir(self.run_dir) else None
        loaded = load_checkpoint_file(t.model_load_path) if t.model_load_path and not resumed else None
        self.task = task or load_task(cfg.data, list(t.eval_keys))
        self.device = torch.device(t.device)
        seed_everything(t.seed)
        self.model = create_model(cfg.model, len(self.task.vocab))
        if loaded is not None:
            load_model_weights(self.model, loaded, t.model_load_path)
            self._check_vocab(loaded, t.model_load_path)
        self.model.to(self.device)
        if t.compile:
            self.model.compile()  # in place: the state-dict keys stay those of the plain model
        self.interface = create_model_interface(self.model, is_prefix_lm=t.is_prefix_lm,
                                                label_smoothing=t.label_smoothing,
                                                gate_l0_penalty=cfg.model.gate_l0_penalty)
        self.optimizer = make_optimizer(self.model, t.lr, t.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, t.num_warmup_steps, t.max_train_steps, t.no_decay_lr)
        self.step = self._continue_lr(loaded) if t.continue_lr and loaded is not None else 0
        self.train_seqs: list[Sequence] = [encode(e, self.task.vocab) for e in self.task.train]
        self.sampler = EpochSampler(len(self.train_seqs), t.batch_size, t.seed)
        self.eval_batches = {split: make_eval_batches(examples, self.task.vocab, t.eval_batch_size)
                             for split, examples in self.task.eval.items()}
        self.best: dict[str, float] = {}
        self.wandb_id: str | None = None
        self.resumed = resumed is not None
        if resumed:
            self._restore(*resumed)
        # Events after the checkpoint we resume from are logged again by this run.
        self.kept_metrics = metrics_until(self._metrics_path(), self.step) if self.resumed else ""

    def _check_vocab(self, loaded: dict, path: str) -> None:
        saved = loaded.get("vocab")
        if saved is not None and list(saved) != self.task.vocab.words:
            raise HierGenError(f"{path}: checkpoint vocabulary differs from the vocabulary of "
                               f"dataset {self.cfg.data.dataset}")

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
        saved = state["args"]
        if saved.get("seeds"):  # a seed of a --seeds run saved before seeds recorded their own arguments
            saved = seed_args(saved, saved["seed"])
        changed = sorted(k for k in set(saved) | set(self.cfg.args)
                         if k not in RESUMABLE_CHANGES and saved.get(k) != self.cfg.args.get(k))
        if changed:
            raise HierGenError(f"{path}: the run was started with other values of "
                               f"{', '.join('--' + k for k in changed)}; resume it with the same flags")
        self._check_vocab(state, path)
        load_model_weights(self.model, state, path)
        self.optimizer.load_state_dict(state["optimizer_state_dict"])
        self.scheduler.load_state_dict(state["scheduler_state_dict"])
        self.sampler.load_state_dict(state["sampler_state"])
        set_rng_state(state["rng_state"])
        self.step, self.best, self.wandb_id = state["step"], dict(state["best"]), state["wandb_id"]
        print(f"resuming {self.run_dir} from step {self.step}", flush=True)

    def run(self) -> dict[str, float]:
        """Train to max_train_steps; return the metrics of the last evaluation (see `train_runs`)."""
        self.model.train()
        return train_runs([self], lambda: [self._train_step()])

    def open_run(self) -> RunLogger:
        """Create (or, resuming, tidy) the run directory and start logging."""
        if self.run_dir:
            os.makedirs(self.run_dir, exist_ok=True)
            atomic_write_text(self._metrics_path(), self.kept_metrics)
            atomic_write_text(os.path.join(self.run_dir, "args.json"), json.dumps(self.cfg.args, indent=4))
        logger = RunLogger(self.cfg, self.run_dir, self.task.wandb_project, self.step, self.wandb_id)
        self.wandb_id = logger.wandb_id
        return logger

    def _metrics_path(self) -> str:
        return os.path.join(self.run_dir, "metrics.jsonl")

    def _train_step(self) -> tuple[int, float, dict[str, torch.Tensor]]:
        """One update; returns (step, lr used, device tensors to log) without a host sync."""
        batch = collate([self.train_seqs[i] for i in self.sampler.next_indices()],
                        len(self.task.vocab) + 2).to(self.device)
        lr = self.scheduler.get_last_lr()[0]
        with training_precision(self.cfg, self.device):
            out = self.interface(batch)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        logged = {"loss": out.loss.detach(),
                  "grad_norm": clipped_step(self.optimizer, self.model, self.cfg.train.max_grad_norm)}
        if out.l0 is not None:
            logged["l0"] = out.l0
        self.scheduler.step()
        self.step += 1
        return self.step, lr, logged

    def flush_train_log(self, logger: RunLogger, pending: list) -> None:
        """Read the pending steps' values off the device in one transfer and log them in order.

        Checking here rather than every step keeps the GPU free of host syncs; a non-finite value
        stops the run before the next checkpoint could save damaged weights.
        """
        if not pending:
            return
        names = list(pending[0][2])
        values = torch.stack([torch.stack([logged[n] for n in names]) for _, _, logged in pending]).tolist()
        for (step, lr, _), row in zip(pending, values):
            bad = [name for name, value in zip(names, row) if not math.isfinite(value)]
            if bad:
                logger.flush()
                raise RunFailed(f"non-finite {' and '.join(bad)} at step {step}; stopping "
                                f"({kept_checkpoint(self.run_dir)})")
            logger.log({**dict(zip(names, row)), "lr": lr, "iteration": step}, step)
        logger.progress(pending[-1][0], values[-1][0])
        pending.clear()

    def evaluate_and_log(self, logger: RunLogger) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for split, batches in self.eval_batches.items():
            result: SplitResult = evaluate(self.interface, batches, self.device)
            self.best[split] = min(self.best.get(split, float("inf")), result.loss)
            metrics.update(result.metrics(split, self.cfg.train.callback))
            metrics[f"best/{split}"] = self.best[split]
        metrics["iteration"] = self.step
        logger.log(metrics, self.step)
        _print_summary(self.step, metrics)
        return metrics

    def save(self, logger: RunLogger) -> None:
        """Make the logged events durable, then write the checkpoint (atomically)."""
        logger.flush(durable=True)
        if not self.run_dir:
            return
        save_checkpoint(checkpoint_path(self.run_dir, self.step), model=self.model,
                        optimizer=self.optimizer, scheduler=self.scheduler, step=self.step,
                        sampler_state=self.sampler.state_dict(), best=self.best,
                        wandb_id=self.wandb_id, vocab_words=self.task.vocab.words, args=self.cfg.args)

    def preempt(self, signum: int) -> None:
        """After the checkpoint: on SIGUSR1 under SLURM requeue this job (it resumes with --resume)."""
        job = self.cfg.train.slurm_job_id
        if job and signum == REQUEUE_SIGNAL:
            requeued = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if requeued.returncode != 0:
                print(f"warning: scontrol requeue {job} failed: {requeued.stderr.strip()}", flush=True)
        raise Preempted(f"stopped by {signal.Signals(signum).name} at step {self.step}; checkpoint saved"
                        + (f" in {self.run_dir}, continue with --resume" if self.run_dir else ""))


def train_runs(trainers: list[Trainer], train_step: Callable[[], list[tuple]],
               sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """The loop of one run, or of several trained in step (`--seeds`): train to max_train_steps,
    logging, evaluating and checkpointing each run; returns the last run's last evaluation.

    `train_step()` makes one update and returns each run's entry to log; `sync()` brings the
    runs' own models and optimizers up to date before they are evaluated or saved. Raises
    Preempted after checkpointing on SIGTERM/SIGUSR1, RunFailed on a non-finite loss or gradient
    and when a file cannot be written; the last complete checkpoint is kept.
    """
    first, t = trainers[0], trainers[0].cfg.train
    last: dict[str, float] = {}
    with failing_writes_stop(first.run_dir):
        loggers = [trainer.open_run() for trainer in trainers]
        stop = StopRequest()
        try:
            if not first.resumed:
                for trainer, logger in zip(trainers, loggers):
                    last = trainer.evaluate_and_log(logger)
                    trainer.save(logger)
            pending: list[list[tuple]] = [[] for _ in trainers]
            while first.step < t.max_train_steps and stop.signum is None:
                for queue, entry in zip(pending, train_step()):
                    queue.append(entry)
                done = first.step == t.max_train_steps
                evaluating = first.step % t.eval_every == 0 or done
                if evaluating:
                    sync()
                for trainer, logger, queue in zip(trainers, loggers, pending):
                    if len(queue) >= TRAIN_LOG_FLUSH or evaluating:
                        trainer.flush_train_log(logger, queue)
                    if evaluating:
                        last = trainer.evaluate_and_log(logger)
                # Decided after the evaluation: a signal that came during it still gets its checkpoint.
                if first.step % t.save_every == 0 or done or stop.signum is not None:
                    if not evaluating:
                        sync()
                    for trainer, logger, queue in zip(trainers, loggers, pending):
                        trainer.flush_train_log(logger, queue)
                        trainer.save(logger)
        finally:
            stop.restore()
            for logger in loggers:
                logger.close()
    if stop.signum is not None and first.step < t.max_train_steps:
        first.preempt(stop.signum)
    return last


@contextlib.contextmanager
def failing_writes_stop(run_dir: str | None) -> Iterator[None]:
    """Turn a failed write (disk full, directory gone) into RunFailed naming what is kept."""
    try:
        yield
    except OSError as e:
        raise RunFailed(f"cannot write {e.filename or 'a run file'}: {e.strerror} "
                        f"({kept_checkpoint(run_dir)})") from None


def kept_checkpoint(run_dir: str | None) -> str:
    saved = checkpoint_steps(run_dir) if run_dir and os.path.isdir(run_dir) else []
    if not saved:
        return "no checkpoint was saved"
    return f"last good checkpoint: {checkpoint_path(run_dir, saved[-1])}"


def clipped_step(optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                 max_norm: float) -> torch.Tensor:
    """Clip the total gradient norm to max_norm (when > 0) as `clip_grad_norm_` does, then step;
    returns the norm before clipping (what is logged).

    The clip factor reaches the fused AdamW kernel as its gradient scale (the protocol of AMP's
    GradScaler): the kernel divides each gradient by it in the pass that updates the weights,
    instead of a pass of its own over all 19M gradients.
    """
    norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    if max_norm > 0:
        optimizer.grad_scale = ((norm + 1e-6) / max_norm).clamp(min=1.0)
    optimizer.step()
    return norm


def _print_summary(step: int, metrics: dict[str, float]) -> None:
    """One line per evaluation: losses and task accuracies (per-type details stay in the logs)."""
    shown = [f"{k}={v:.4f}" for k, v in metrics.items()
             if k.startswith("curr-") and k.endswith("-ppl") or k.endswith("_aux")]
    print(f"step {step}: " + " ".join(shown), flush=True)
