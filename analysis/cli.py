"""The command-line frame of `python -m analysis` and plot.py: one-line errors, atomic outputs."""
from __future__ import annotations

import os
import sys
from typing import Callable

import pandas as pd

from util import HierGenError, atomic_open

EXIT_FAILED, EXIT_USAGE = 1, 2


def run(command: Callable[[], None]) -> int:
    """Run a command; a user error prints `error: ...` as one line on stderr and returns 2."""
    try:
        command()
    except HierGenError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # a write that failed midway (disk full): the outputs before it are whole
        print(f"error: {e.filename or 'an output'}: {e.strerror}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def write_csv(table: pd.DataFrame, path: str) -> None:
    """One row per item, empty cells where a value does not apply; replaced atomically.

    Ten significant digits: 0.877, not the 0.8770000000000001 of a float's shortest repr.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_open(path, "w") as f:
        table.to_csv(f, index=False, na_rep="", float_format="%.10g")
