"""The training loop: one run, or the runs of several seeds trained in step (`--seeds`).

Each step: update → log (every TRAIN_LOG_FLUSH steps) → evaluate (every --eval_every) →
checkpoint (every --save_every) → stop on a signal. A single run makes its own update; the runs
of `--seeds` make theirs together, as one vectorised update (multi_seed.StackedRuns).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Iterator

from config import Config, seed_config
from data_utils.load import TaskData, load_task
from multi_seed import StackedRuns
from training_utils import Run, StepRecord, kept_checkpoint
from util import HierGenError, Preempted, RunFailed

TRAIN_LOG_FLUSH = 100  # training-step values are read off the device in chunks, not every step
# Checkpoint at the next step boundary and exit; on REQUEUE_SIGNAL (SLURM's time-limit warning)
# also requeue the job. TERM does not requeue: `scancel` must stop a job, and SLURM requeues the
# jobs it preempts by itself.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
REQUEUE_SIGNAL = signal.SIGUSR1


class Trainer:
    """Trains the runs of a Config to --max_train_steps (`run`)."""

    def __init__(self, cfg: Config, task: TaskData | None = None):
        self.cfg = cfg
        task = task or load_task(cfg.data, list(cfg.train.eval_keys))
        configs = [seed_config(cfg, seed) for seed in cfg.train.seeds] or [cfg]
        self.runs = [Run(run_cfg, task) for run_cfg in configs]
        if len({run.step for run in self.runs}) > 1:
            raise HierGenError("the seeds' run directories resume from different steps")
        self.stack = StackedRuns(self.runs, cfg) if cfg.train.seeds else None
        self.synced_step = self.step

    @property
    def step(self) -> int:
        return self.runs[0].step

    def train_step(self) -> list[StepRecord]:
        """One update of every run: its own, or one vectorised update of all the seeds."""
        if self.stack is None:
            return [self.runs[0].train_step()]
        return self.stack.train_step()

    def run(self) -> None:
        """Train to max_train_steps.

        Raises Preempted after checkpointing on SIGTERM/SIGUSR1, RunFailed on a non-finite loss or
        gradient and when a file cannot be written; the last complete checkpoint is kept.
        """
        t = self.cfg.train
        with failing_writes_stop(self.runs[0].run_dir), self.open_runs(), StopRequest() as stop:
            if not self.runs[0].resumed:
                self.evaluate()
                self.save()
            while self.step < t.max_train_steps and stop.signum is None:
                for run, record in zip(self.runs, self.train_step()):
                    run.pending.append(record)
                done = self.step == t.max_train_steps
                if len(self.runs[0].pending) >= TRAIN_LOG_FLUSH:
                    self.log_steps()
                if self.step % t.eval_every == 0 or done:
                    self.evaluate()
                # Decided after the evaluation: a signal that came during it still gets its checkpoint.
                if self.step % t.save_every == 0 or done or stop.signum is not None:
                    self.save()
        if stop.signum is not None and self.step < t.max_train_steps:
            self.preempt(stop.signum)

    @contextlib.contextmanager
    def open_runs(self) -> Iterator[None]:
        """Each run's directory and logs, open for the loop and closed however it ends."""
        try:
            for run in self.runs:
                run.open()
            yield
        finally:
            for run in self.runs:
                run.close()

    def sync(self) -> None:
        """Bring each run's own model, optimizer and schedule up to date (--seeds trains copies)."""
        if self.stack is not None and self.synced_step != self.step:
            self.stack.unstack()
            self.synced_step = self.step

    def log_steps(self) -> None:
        for run in self.runs:
            run.log_steps()

    def evaluate(self) -> None:
        self.sync()
        self.log_steps()
        for run in self.runs:
            run.evaluate()

    def save(self) -> None:
        self.sync()
        self.log_steps()
        for run in self.runs:
            run.save()

    def preempt(self, signum: int) -> None:
        """After the checkpoint: on SIGUSR1 under SLURM requeue this job (it resumes with --resume)."""
        job, run_dir = self.cfg.train.slurm_job_id, self.runs[0].run_dir
        if job and signum == REQUEUE_SIGNAL:
            requeued = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if requeued.returncode != 0:
                print(f"warning: scontrol requeue {job} failed: {requeued.stderr.strip()}", flush=True)
        raise Preempted(f"stopped by {signal.Signals(signum).name} at step {self.step}; checkpoint saved"
                        + (f" in {run_dir}, continue with --resume" if run_dir else ""))


class StopRequest:
    """Records SIGTERM/SIGUSR1 (while in its `with` block) so that the loop can checkpoint at the
    next step boundary."""

    def __init__(self):
        self.signum: int | None = None

    def __enter__(self) -> "StopRequest":
        self.previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        self.signum = signum


@contextlib.contextmanager
def failing_writes_stop(run_dir: str | None) -> Iterator[None]:
    """Turn a failed write (disk full, directory gone) into RunFailed naming what is kept."""
    try:
        yield
    except OSError as e:
        raise RunFailed(f"cannot write {e.filename or 'a run file'}: {e.strerror} "
                        f"({kept_checkpoint(run_dir)})") from None
