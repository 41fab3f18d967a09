"""Fixtures shared by the test modules."""
from __future__ import annotations

import os

import matplotlib.pyplot as plt
import pytest
import torch

from helpers import QF, QF_TEST, QF_TYPE, generated, write_files

# Tiny models gain nothing from intra-op threads, and OpenMP threads that spin-wait slow every
# operator down twenty-fold when another process holds one of the cores.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def close_figures():
    """Figures a test drew and left open are closed after it: each test starts with none."""
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def data_dir() -> str:
    """A data dir holding the default QF and TI files, generated once per test session."""
    return generated()


@pytest.fixture
def qf_dir(tmp_path) -> str:
    """A data dir whose QF folder holds the hand-written QF lines as train and val, QF_TEST as test."""
    write_files(tmp_path / "question_formation_data", {
        "question.train": QF, "question.val": QF, "question.test": QF_TEST, "question.test.type": QF_TYPE})
    return str(tmp_path)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A single-node SLURM cluster of our own (tests/slurm_cluster.py); skips without root or SLURM."""
    from slurm_cluster import local_cluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with local_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
