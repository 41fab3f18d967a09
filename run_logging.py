"""Where metrics go: metrics.jsonl in the run directory, W&B when --run_name is given, and the
terminal (a tqdm bar on a terminal, a periodic status line in SLURM logs)."""
from __future__ import annotations

import json
import math
import os
import sys
import time

from tqdm import tqdm

from config import Config

STATUS_EVERY_S = 60.0  # one status line a minute when output is not a terminal


class RunLogger:
    """Sends every logged event, with the same keys and values, to metrics.jsonl and W&B."""

    def __init__(self, cfg: Config, run_dir: str | None, project: str, start_step: int):
        t = cfg.train
        self.jsonl = open(os.path.join(run_dir, "metrics.jsonl"), "a") if run_dir else None
        self.wandb_run = _start_wandb(cfg, run_dir, project) if t.run_name else None
        total = t.max_train_steps
        self.bar = tqdm(total=total, initial=start_step, unit="step", dynamic_ncols=True,
                        disable=not sys.stderr.isatty() or total == start_step)
        self.started = self.last_status = time.monotonic()
        self.start_step, self.total = start_step, total

    def log(self, metrics: dict, step: int) -> None:
        metrics = {k: _plain(v) for k, v in metrics.items()}
        if self.jsonl:
            self.jsonl.write(json.dumps(metrics) + "\n")
            self.jsonl.flush()
        if self.wandb_run:
            self.wandb_run.log(metrics, step=step)

    def progress(self, step: int, loss: float) -> None:
        """Advance the bar (or print a status line every minute when not on a terminal)."""
        if not self.bar.disable:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            return
        now = time.monotonic()
        if now - self.last_status >= STATUS_EVERY_S:
            self.last_status = now
            rate = (step - self.start_step) / (now - self.started)
            eta = (self.total - step) / rate if rate > 0 else math.inf
            print(f"step {step}/{self.total} loss {loss:.4f} {rate:.1f} steps/s eta {_hms(eta)}", flush=True)

    def close(self) -> None:
        self.bar.close()
        if self.jsonl:
            self.jsonl.close()
        if self.wandb_run:
            self.wandb_run.finish()


def _start_wandb(cfg: Config, run_dir: str | None, project: str):
    """Import wandb only now: machines without it can train with logging off."""
    t = cfg.train
    if t.wandb_mode == "disabled":
        return None
    import wandb

    name = f"{t.run_name}-{t.slurm_job_id}" if t.slurm_job_id else t.run_name
    return wandb.init(project=project, entity=t.wandb_entity, name=name, config=cfg.args,
                      mode=t.wandb_mode, dir=run_dir)


def _plain(value):
    """JSON- and W&B-friendly number (tensors and numpy scalars become Python floats/ints)."""
    return value.item() if hasattr(value, "item") else value


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
