"""Shared pieces of the data tests: the generated default files (once per session) and fixtures."""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import torch

from data_utils.registry import ensure_generated

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference"


@functools.lru_cache(maxsize=None)
def generated() -> str:
    """A temporary data dir holding the default files (data seed 0)."""
    data_dir = tempfile.mkdtemp(prefix="hier_gen_data_")
    atexit.register(shutil.rmtree, data_dir, True)
    ensure_generated(data_dir, "question", 0)
    ensure_generated(data_dir, "tense", 0)
    return data_dir


def lines(path: str | Path) -> list[str]:
    return Path(path).read_text().splitlines()


def write_files(folder: str | Path, files: dict[str, list[str]]) -> None:
    os.makedirs(folder, exist_ok=True)
    for name, content in files.items():
        Path(folder, name).write_text("".join(line + "\n" for line in content))


def chi2_p(a: Counter, b: Counter) -> float:
    """p-value of a chi-square homogeneity test of two samples; cells with expected count < 5 pooled."""
    na, nb = sum(a.values()), sum(b.values())
    kept, rare = [], [0, 0]
    for cell in set(a) | set(b):
        total = a[cell] + b[cell]
        if total * min(na, nb) / (na + nb) < 5:
            rare[0] += a[cell]
            rare[1] += b[cell]
        else:
            kept.append((a[cell], b[cell]))
    if sum(rare):
        kept.append(tuple(rare))
    x = 0.0
    for row in kept:
        total = sum(row)
        for observed, size in zip(row, (na, nb)):
            expected = total * size / (na + nb)
            x += (observed - expected) ** 2 / expected
    df = len(kept) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(x / 2, dtype=torch.float64)))
