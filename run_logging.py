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
from util import HierGenError

STATUS_EVERY_S = 60.0  # one status line a minute when output is not a terminal


class MetricsFile:
    """metrics.jsonl, appended with whole lines only.

    Each batch of events goes out in one write() on an O_APPEND descriptor: a killed process
    leaves the file either without the batch or with all of it, never with half a line.
    """

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.buffer: list[str] = []

    def add(self, event: dict) -> None:
        self.buffer.append(json.dumps(event) + "\n")

    def flush(self, durable: bool = False) -> None:
        data = "".join(self.buffer).encode()
        self.buffer.clear()
        while data:
            data = data[os.write(self.fd, data):]
        if durable:
            os.fsync(self.fd)

    def close(self) -> None:
        self.flush(durable=True)
        os.close(self.fd)


def metrics_until(path: str, step: int) -> str:
    """The events of metrics.jsonl up to `step` (the checkpoint a run resumes from), as text,
    without a torn last line; HierGenError names a line that is not a logged event."""
    if not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        data = f.read()
    kept = []
    for number, line in enumerate(data[:data.rfind(b"\n") + 1].splitlines(keepends=True), 1):
        try:
            iteration = json.loads(line)["iteration"]
        except (ValueError, TypeError, KeyError):
            iteration = None
        if not isinstance(iteration, int):
            raise HierGenError(f"{path}:{number}: not a logged event (a JSON object with an iteration)")
        if iteration <= step:
            kept.append(line.decode())
    return "".join(kept)


class RunLogger:
    """Sends every logged event, with the same keys and values, to metrics.jsonl and W&B."""

    def __init__(self, cfg: Config, run_dir: str | None, project: str, start_step: int,
                 wandb_id: str | None = None):
        t = cfg.train
        self.metrics = MetricsFile(os.path.join(run_dir, "metrics.jsonl")) if run_dir else None
        self.wandb_run = _start_wandb(cfg, run_dir, project, wandb_id) if t.run_name else None
        total = t.max_train_steps
        self.bar = tqdm(total=total, initial=start_step, unit="step", dynamic_ncols=True,
                        disable=not sys.stderr.isatty() or total == start_step)
        self.started = self.last_status = time.monotonic()
        self.start_step, self.total = start_step, total

    @property
    def wandb_id(self) -> str | None:
        return self.wandb_run.id if self.wandb_run else None

    def log(self, metrics: dict, step: int) -> None:
        metrics = {k: _plain(v) for k, v in metrics.items()}
        if self.metrics:
            self.metrics.add(metrics)
        if self.wandb_run:
            self.wandb_run.log(metrics, step=step)

    def flush(self, durable: bool = False) -> None:
        """Write the logged events out; `durable` also syncs them (before a checkpoint)."""
        if self.metrics:
            self.metrics.flush(durable)

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
        if self.metrics:
            self.metrics.close()
        if self.wandb_run:
            self.wandb_run.finish()


def _start_wandb(cfg: Config, run_dir: str | None, project: str, wandb_id: str | None):
    """Import wandb only now: machines without it can train with logging off."""
    t = cfg.train
    if t.wandb_mode == "disabled":
        return None
    import wandb

    name = f"{t.run_name}-{t.slurm_job_id}" if t.slurm_job_id else t.run_name
    return wandb.init(project=project, entity=t.wandb_entity, name=name, config=cfg.args,
                      mode=t.wandb_mode, dir=run_dir, id=wandb_id,
                      resume="allow" if wandb_id else None, reinit="create_new")


def _plain(value):
    """JSON- and W&B-friendly number (tensors and numpy scalars become Python floats/ints)."""
    return value.item() if hasattr(value, "item") else value


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
