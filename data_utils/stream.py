"""Shared generation core: one stream of sampled lines, deduplicated and routed into split files."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable

from util import HierGenError, atomic_write_text

# A draw is (pool, dedup key, line text); pool None drops the line.
Draw = Callable[[], tuple[str | None, str, str]]
MAX_IDLE_DRAWS = 200_000  # consecutive draws without a new line: the grammar is exhausted


def fill_splits(draw: Draw, quotas: dict[str, list[tuple[str, int]]], seen: set[str]) -> dict[str, list[str]]:
    """Draw until every quota is met; a new line goes to the first unfilled split of its pool.

    `quotas` maps a pool to its splits in filling order, e.g. {"iid": [("train", 100000),
    ("val", 1000)]}; so splits fill in stream order. Several pools may feed one split (caps). `seen` holds the keys of lines already
    placed (shared across calls: dedup is across all splits) and is updated.
    """
    out = {split: [] for splits in quotas.values() for split, _ in splits}
    pending = {pool: [[split, size] for split, size in splits if size > 0] for pool, splits in quotas.items()}
    pending = {pool: splits for pool, splits in pending.items() if splits}
    idle = 0
    while pending:
        pool, key, text = draw()
        if pool not in pending or key in seen:
            idle += 1
            if idle > MAX_IDLE_DRAWS:
                raise HierGenError(f"cannot draw enough distinct lines for {sorted(pending)}")
            continue
        idle = 0
        seen.add(key)
        quota = pending[pool][0]
        out[quota[0]].append(text)
        quota[1] -= 1
        if quota[1] == 0:
            pending[pool].pop(0)
            if not pending[pool]:
                del pending[pool]
    return out


def write_folder(folder: str, files: dict[str, list[str]]) -> None:
    """Create `folder` holding `files` (name -> lines) all at once: built beside it under a
    temporary name, then renamed. A crash leaves no half-written dataset, and when two processes
    (say, the tasks of a SLURM array) generate the same folder, the first rename wins and the
    other's identical copy is dropped."""
    parent = os.path.dirname(os.path.abspath(folder))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.tmp", dir=parent)
    except OSError as e:
        raise HierGenError(f"cannot generate data in {parent}: {e.strerror}") from None
    try:
        for name, lines in files.items():
            atomic_write_text(os.path.join(tmp, name), "".join(line + "\n" for line in lines))
        try:
            os.rename(tmp, folder)
        except OSError:
            if not os.path.isdir(folder):
                raise
    except OSError as e:
        raise HierGenError(f"cannot generate data in {parent}: {e.strerror}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
