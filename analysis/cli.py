"""Outputs of `python -m analysis` and plot.py: CSV tables, written atomically."""
from __future__ import annotations

import os

import pandas as pd

from util import atomic_open


def write_csv(table: pd.DataFrame, path: str) -> None:
    """One row per item, empty cells where a value does not apply; replaced atomically.

    Ten significant digits: 0.877, not the 0.8770000000000001 of a float's shortest repr.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_open(path, "w") as f:
        table.to_csv(f, index=False, na_rep="", float_format="%.10g")
