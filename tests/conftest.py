"""Fixtures shared by the test modules."""
from __future__ import annotations

import os

import matplotlib.pyplot as plt
import pytest
import torch

from data_utils.lines import read_text_lines
from helpers import QF, QF_TEST, QF_TYPE, generated, model_flags, parse_qf, train, write_files

# Tiny models gain nothing from intra-op threads, and OpenMP threads that spin-wait slow every
# operator down twenty-fold when another process holds one of the cores.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY_SWEEP = ["--callback", *model_flags(2, 32, 2), "--lr", "3e-3", "--num_warmup_steps", "5",
              "--max_train_steps", "40", "--eval_every", "10", "--save_every", "40"]


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
def tiny_data(data_dir, tmp_path_factory) -> str:
    """The first lines of the generated QF splits, and a question_D20 training set of 20 input types
    (bare subjects only, so that every generalization type is unseen by its runs)."""
    out = tmp_path_factory.mktemp("tiny_data")
    source = os.path.join(data_dir, "question_formation_data")
    files = {name: read_text_lines(os.path.join(source, name))[:n]
             for name, n in [("question.train", 600), ("question.val", 100), ("question.test", 300),
                             ("question.test.type", 300)]}
    write_files(out / "question_formation_data", files)
    bare = [line for line in read_text_lines(os.path.join(source, "question.train"))[:5000]
            if parse_qf(line).meta["subject"] == "bare"]
    types = list(dict.fromkeys(parse_qf(line).type_tag for line in bare))[:20]
    d20 = [line for line in bare if parse_qf(line).type_tag in types]
    write_files(out / "question_D20_formation_data", {"question.train": d20, "question.val": d20[:50]})
    return str(out)


@pytest.fixture(scope="session")
def sweep(tiny_data, tmp_path_factory) -> str:
    """Four seeds of two conditions (datasets question and question_D20), trained for 40 steps with
    `--seeds`: the run directories of a tiny sweep, shared by the analyses' end-to-end tests."""
    out = str(tmp_path_factory.mktemp("sweep"))
    for dataset in ("question", "question_D20"):
        assert train(tiny_data, "--dataset", dataset, *TINY_SWEEP, "--seeds", "1,2,3,4", "--save_dir", out,
                     "--save_prefix", dataset) == 0
    return out


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A single-node SLURM cluster of our own (tests/slurm_cluster.py); skips without root or SLURM."""
    from slurm_cluster import local_cluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with local_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
