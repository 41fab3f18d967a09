"""Fixtures shared by the test modules."""
from __future__ import annotations

import os

import pytest
import torch

from data_helpers import generated

# Tiny models gain nothing from intra-op threads, and OpenMP threads that spin-wait slow every
# operator down twenty-fold when another process holds one of the cores.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def data_dir() -> str:
    """A data dir holding the default QF and TI files, generated once per test session."""
    return generated()[0]
