"""The generated default files: sizes, routing, dedup, validity, determinism; user folders."""
import os
from collections import Counter
from pathlib import Path

import pytest

from data_utils import question, stream, tense
from data_utils.config import DataConfig
from data_utils.load import load_task, validate_dataset
from data_utils.registry import ensure_generated
from helpers import QF, generated, lines, qf_path, ti_path, write_files
from util import HierGenError


def test_every_generated_file_passes_the_validator():
    data_dir = generated()
    assert validate_dataset(DataConfig(dataset="question", data_dir=data_dir)) == {"train": 100000, "val": 1000, "test": 10000}
    counts = validate_dataset(DataConfig(dataset="tense", data_dir=data_dir))
    assert (counts["train"], counts["val"], counts["test"]) == (100000, 1000, 10000)
    assert counts["val_rc"] == counts["val_rc_sbj"] + counts["val_rc_obj"]
    assert counts["test_rc"] + counts["test_prep"] == 10000


def test_qf_test_is_the_capped_generalization_set():
    data = load_task(DataConfig(dataset="question", data_dir=generated()), ["test"])
    test = data.eval["test"]
    assert len(test) == 10000 and all(e.marker == "quest" for e in test)
    assert Counter(e.meta["subject"] == "orc" for e in test) == {False: 6667, True: 3333}
    for e in test:
        assert e.meta["n_aux"] == 2
        hierarchical, linear = dict(e.target.answers)["hierarchical"], dict(e.target.answers)["linear"]
        assert hierarchical.startswith("does") == linear.startswith("does")  # same number
        assert hierarchical.endswith("n't") != linear.endswith("n't")  # opposite polarity
    types = lines(qf_path("question.test.type"))
    assert [e.type_tag for e in test] == types and len(set(types)) == 56


def test_ti_test_lines_all_have_an_agreement_attractor():
    data = load_task(DataConfig(dataset="tense", data_dir=generated()), ["test", "val"])
    assert len(data.eval["test"]) == 10000
    assert all(e.marker == "PRESENT" and e.meta["attractor"] and e.target.answers for e in data.eval["test"])
    assert not any(e.meta["attractor"] and e.marker == "PRESENT" for e in data.train + data.eval["val"])
    assert data.wandb_project == "hier-genv-tense"


def test_no_qf_eval_line_in_train_and_no_ti_sentence_in_two_splits():
    train = set(lines(qf_path("question.train")))
    assert len(train) == 100000
    assert not train & set(lines(qf_path("question.val"))) and not train & set(lines(qf_path("question.test")))
    sentences = [line.split(" . ")[0] for split in ("train", "val", "test") for line in lines(ti_path(f"tense.{split}"))]
    assert len(sentences) == len(set(sentences)) == 111000


def test_same_seed_is_byte_identical_and_another_seed_differs():
    for name, content in question.generate_standard(0).items():
        assert qf_path(name).read_text() == "".join(line + "\n" for line in content)
    for name, content in tense.generate_standard(0).items():
        assert ti_path(name).read_text() == "".join(line + "\n" for line in content)
    assert question.generate_diversity(1, 20, "question_D20")["question.val"] != \
        question.generate_diversity(0, 20, "question_D20")["question.val"]
    assert tense.generate_standard(1)["tense.val"] != lines(ti_path("tense.val"))


def test_a_folder_missing_some_files_is_refused_untouched_and_seeds_get_their_own_folder(tmp_path):
    user = tmp_path / "question_formation_data"
    user.mkdir()
    (user / "question.val").write_text(QF[0] + "\n")
    with pytest.raises(HierGenError, match=r"holds question.val but not question.train, question.test: "):
        load_task(DataConfig(dataset="question", data_dir=str(tmp_path)), ["val"])
    assert os.listdir(user) == ["question.val"]
    load_task(DataConfig(dataset="question", data_dir=str(tmp_path), data_seed=3), [])
    assert sorted(os.listdir(tmp_path / "question_formation_data_seed3")) == [
        "question.test", "question.test.type", "question.train", "question.val"]


def test_a_complete_user_folder_without_the_type_file_is_used_as_it_is(tmp_path):
    """The test types follow from the test lines: nothing is written next to the user's files."""
    user = tmp_path / "question_formation_data"
    write_files(user, {"question.train": lines(qf_path("question.train"))[:50],
                       "question.val": lines(qf_path("question.val"))[:20],
                       "question.test": lines(qf_path("question.test"))[:30]})
    data = load_task(DataConfig(dataset="question", data_dir=str(tmp_path)), ["val", "test"])
    assert (len(data.train), len(data.eval["val"]), len(data.eval["test"])) == (50, 20, 30)
    assert [e.type_tag for e in data.eval["test"]] == lines(qf_path("question.test.type"))[:30]
    assert sorted(os.listdir(user)) == ["question.test", "question.train", "question.val"]


def test_generation_leaves_no_half_folder_behind(tmp_path, monkeypatch):
    """A dataset folder appears whole or not at all (it is built under a temporary name)."""
    def fail_halfway(path, text):
        if path.endswith("question.test"):
            raise OSError(28, "No space left on device")
        Path(path).write_text(text)

    monkeypatch.setattr(stream, "atomic_write_text", fail_halfway)
    with pytest.raises(HierGenError, match="cannot generate data in .*: No space left on device"):
        ensure_generated(str(tmp_path), "question")
    assert os.listdir(tmp_path) == []
