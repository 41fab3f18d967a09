"""Outputs of `python -m analysis` and plot.py: CSV tables, written atomically, and per-step summaries."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from util import atomic_open


def write_csv(table: pd.DataFrame, path: str) -> None:
    """One row per item, empty cells where a value does not apply; replaced atomically.

    Ten significant digits: 0.877, not the 0.8770000000000001 of a float's shortest repr.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_open(path, "w") as f:
        table.to_csv(f, index=False, na_rep="", float_format="%.10g")


def print_steps(table: pd.DataFrame, columns: list[str], rows: int = 11) -> None:
    """Print `step` and `columns` of a per-checkpoint table: at most `rows` rows, evenly spaced
    over training, the first and the last included."""
    picked = np.unique(np.linspace(0, len(table) - 1, min(rows, len(table))).round().astype(int))
    print(table.iloc[picked][["step", *columns]].to_string(index=False, float_format="%.4f", na_rep="-"))
