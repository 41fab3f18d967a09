"""Seen and unseen generalization types, from a tiny hand-written training file."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from analysis.seen import seen_accuracy, type_table
from helpers import QF, QF_TEST, parse_qf, write_files

TEST = [
    # Input tags det n_s rel aux_s v_intrans aux_s v_intrans: the decl QF[2] has them (seen).
    *QF_TEST,
    # Plural nouns: no training input has these tags (unseen), two lines of the second type.
    "her newts who don't eat do move . quest\tdo her newts who don't eat move ?",
    "her newts who don't eat do amuse the yak . quest\tdo her newts who don't eat amuse the yak ?",
    "our yaks who do eat don't amuse my newt . quest\tdon't our yaks who do eat amuse my newt ?",
]


def key(line: str) -> str:
    return "test_aux_type/" + parse_qf(line).type_tag.replace("\t", " ")


@pytest.fixture
def data(tmp_path) -> str:
    write_files(tmp_path / "question_formation_data", {
        "question.train": QF, "question.val": QF, "question.test": TEST,
        "question.test.type": [parse_qf(line).type_tag for line in TEST]})
    return str(tmp_path)


def test_a_type_is_seen_when_its_input_tags_are_a_training_input(data):
    types = type_table({"dataset": "question", "data_dir": data})
    assert types.loc[key(TEST[0])].tolist() == [1, True]
    assert types.loc[key(TEST[1])].tolist() == [1, False]
    assert types.loc[key(TEST[2])].tolist() == [2, False]  # TEST[2] and TEST[3] share a type
    assert len(types) == 3


def test_the_runs_training_filters_decide_what_was_seen(data):
    """--exclude_complex_decls drops the two-auxiliary decl that made TEST[0]'s type seen."""
    types = type_table({"dataset": "question", "data_dir": data, "exclude_complex_decls": True})
    assert not types["seen"].any()


def test_data_dir_overrides_the_runs_own_folder(data):
    assert type_table({"dataset": "question", "data_dir": "/nowhere"}, data_dir=data) is not None


def test_without_the_data_files_nothing_is_generated(tmp_path):
    args = {"dataset": "question", "data_dir": str(tmp_path / "data")}
    assert type_table(args) is None
    assert not (tmp_path / "data").exists()
    assert type_table({"dataset": "lm", "data_dir": str(tmp_path)}) is None  # a name the loader does not know
    assert os.listdir(tmp_path) == []


def test_seen_and_unseen_accuracy_are_line_weighted(data):
    types = type_table({"dataset": "question", "data_dir": data})
    frame = pd.DataFrame({key(TEST[0]): [0.9, 1.0], key(TEST[1]): [0.0, 0.3], key(TEST[2]): [0.6, np.nan]},
                         index=[0, 10])
    acc = seen_accuracy(frame, types)
    assert acc["seen_acc"].tolist() == pytest.approx([0.9, 1.0])
    # Step 0: (0.0 x 1 + 0.6 x 2) / 3; step 10 lacks the second type: only the first counts.
    assert acc["unseen_acc"].tolist() == pytest.approx([0.4, 0.3])


def test_a_released_folder_without_the_type_file_is_read(data):
    os.remove(os.path.join(data, "question_formation_data", "question.test.type"))
    types = type_table({"dataset": "question", "data_dir": data})
    assert types is not None and types.loc[key(TEST[0])].tolist() == [1, True]
