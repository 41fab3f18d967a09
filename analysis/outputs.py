"""What an analysis command writes and prints: CSV tables and figures, each written atomically, and
per-step summaries."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import FigureBase

import plot
from util import atomic_open


def write_csv(table: pd.DataFrame, path: str) -> None:
    """One row per item, empty cells where a value does not apply; replaced atomically.

    Ten significant digits: 0.877, not the 0.8770000000000001 of a float's shortest repr.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_open(path, "w") as f:
        table.to_csv(f, index=False, na_rep="", float_format="%.10g")


@dataclass(frozen=True)
class Outputs:
    """A command's output folder and the format of its figures (`--out`, `--format`, `--dpi`)."""

    folder: str
    format: str = "png"
    dpi: int = plot.DPI

    def write(self, tables: dict[str, pd.DataFrame], figures: dict[str, FigureBase | Axes]) -> None:
        """`{name}.csv` for each table and `{name}.{format}` for each figure, then one line naming them."""
        written = []
        for name, table in tables.items():
            write_csv(table, os.path.join(self.folder, f"{name}.csv"))
            written.append(f"{name}.csv")
        for name, figure in figures.items():
            plot.save(figure, os.path.join(self.folder, f"{name}.{self.format}"), self.dpi)
            written.append(f"{name}.{self.format}")
        print(f"wrote {', '.join(written)} to {self.folder}")


def print_steps(table: pd.DataFrame, columns: list[str], rows: int = 11) -> None:
    """Print `step` and `columns` of a per-checkpoint table: at most `rows` rows, evenly spaced
    over training, the first and the last included."""
    picked = np.unique(np.linspace(0, len(table) - 1, min(rows, len(table))).round().astype(int))
    print(table.iloc[picked][["step", *columns]].to_string(index=False, float_format="%.4f", na_rep="-"))
