"""Training filters on small hand-written datasets: exactly which lines each keeps."""
import argparse

import pytest

from data_utils import tense
from data_utils.config import DataConfig, add_data_arguments
from data_utils.load import load_task
from helpers import QF, TI, line_of, write_files
from util import HierGenError


@pytest.fixture
def ti_dir(tmp_path):
    spaced = {kind: [TI[i].replace("\t", " ") for i in rows]
              for kind, rows in {"rc": [5, 6], "prep": [1, 3], "rc_sbj": [5], "rc_obj": [6]}.items()}
    write_files(tmp_path / "tense_inflection_data", {
        "tense.train": TI, "tense.val": TI, "tense.test": [TI[3]],
        **{f"tense.{split}_{kind}": rows for split in ("val", "test") for kind, rows in spaced.items()}})
    return str(tmp_path)


def kept(data_dir, dataset, lines, **flags):
    data = load_task(DataConfig(dataset=dataset, data_dir=data_dir, **flags), ["val"])
    return [lines.index(line_of(e)) for e in data.train]


QF_CASES = {
    "exclude_identity": [1, 4, 6, 7],
    "train_on_decl_only": [0, 2, 3, 5],
    "pretrain": [0, 1, 2, 3, 5, 6],
    "train_on_compl_only": [2, 3, 4, 5, 7],
    "train_on_simple_only": [0, 1, 6],
    "train_on_hier_only": [1, 3, 4, 6, 7],
    "train_on_linear_only": [1, 2, 4, 5, 6, 7],
    "exclude_complex_decls": [0, 1, 4, 6, 7],
    "exclude_simple_decls": [1, 2, 3, 4, 6, 7],
    "exclude_middle_decls": [1, 4, 5, 6, 7],
    "exclude_complex_quest": [0, 1, 2, 3, 5, 6],
    "exclude_simple_quest": [0, 2, 3, 4, 5, 7],
}


@pytest.mark.parametrize("flag", QF_CASES)
def test_qf_filter_keeps_exactly(qf_dir, flag):
    assert kept(qf_dir, "question", QF, **{flag: True}) == QF_CASES[flag]


def test_qf_specified_decls_combinations_and_subset(qf_dir):
    assert kept(qf_dir, "question", QF, use_specified_decls="1,3") == [0, 1, 4, 5, 6, 7]
    assert kept(qf_dir, "question", QF) == list(range(8))
    # Filters intersect; the subset is the first int(N*f) lines after filtering.
    assert kept(qf_dir, "question", QF, train_on_decl_only=True, train_on_compl_only=True) == [2, 3, 5]
    assert kept(qf_dir, "question", QF, train_on_decl_only=True, subset_train_frac=0.5) == [0, 2]


def test_qf_exclude_identity_applies_to_every_split(qf_dir):
    data = load_task(DataConfig(dataset="question", data_dir=qf_dir, exclude_identity=True), ["val", "test"])
    assert [e.marker for e in data.eval["val"]] == ["quest"] * 4 and len(data.eval["test"]) == 1


TI_CASES = {
    "exclude_identity": [1, 3, 5, 6],
    "include_past_simple": [2, 1, 3, 5, 6],
    "include_past_simple_verb": [0, 2, 1, 3, 5, 6],
    "include_past_complex": [4, 7, 1, 3, 5, 6],
    "include_past_complex_verb": [0, 4, 7, 1, 3, 5, 6],
    "include_present_simple": [0, 2, 4, 7, 3],
    "include_present_simple_verb": [0, 2, 4, 7, 1, 3],
    "include_present_complex": [0, 2, 4, 7, 5, 6],
    "include_present_complex_verb": [0, 2, 4, 7, 1, 5, 6],
    "include_subject_rc_obj": [0, 2, 4, 7, 1, 3, 6],
    "include_subject_rc_subj": [0, 2, 4, 7, 1, 3, 5],
}


@pytest.mark.parametrize("flag", TI_CASES)
def test_ti_filter_keeps_exactly_past_first(ti_dir, flag):
    assert kept(ti_dir, "tense", TI, **{flag: True}) == TI_CASES[flag]


def test_ti_filter_combination_and_subset(ti_dir):
    assert kept(ti_dir, "tense", TI) == list(range(8))  # no filter: file order
    assert kept(ti_dir, "tense", TI, include_past_simple=True, include_present_complex=True) == [2, 5, 6]
    assert kept(ti_dir, "tense", TI, include_present_complex=True, subset_train_frac=0.5) == [0, 2, 4]
    with pytest.raises(HierGenError, match="keep no training line"):
        kept(ti_dir, "tense", TI, exclude_identity=True, include_present_simple=True, include_present_complex=True)


def test_typed_ti_splits_are_read_from_their_files(ti_dir):
    data = load_task(DataConfig(dataset="tense", data_dir=ti_dir), ["val_rc", "test_prep", "val"])
    assert list(data.eval) == ["val_rc", "test_prep", "val"]
    assert [e.meta["subject"] for e in data.eval["val_rc"]] == ["src_i", "orc"]
    assert tense.SUBSPLITS == ("rc", "prep", "rc_sbj", "rc_obj")


@pytest.mark.parametrize("flags,message", [
    ({"dataset": "tense", "train_on_decl_only": True}, "QF filter --train_on_decl_only does not apply"),
    ({"dataset": "tense", "use_specified_decls": "1"}, "QF filter --use_specified_decls"),
    ({"dataset": "question", "include_past_simple": True}, "TI filter --include_past_simple"),
    ({"dataset": "question", "disamb_num": 10}, "--disamb_num only applies"),
    ({"dataset": "qf_disamb", "disamb_num": 20000}, "at most 10000"),
    ({"dataset": "question", "subset_train_frac": 0.0}, "subset_train_frac"),
    ({"dataset": "question", "use_specified_decls": "one"}, "auxiliary counts like 1,3"),
    ({"dataset": "question_D7"}, "unknown dataset 'question_D7'; known: question, tense, question_D20"),
    ({"data_seed": -1}, "--data_seed"),
])
def test_bad_flag_values_are_refused_in_one_line(flags, message):
    with pytest.raises(HierGenError) as error:
        DataConfig(**flags).check()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unknown_eval_split_lists_valid_ones(qf_dir):
    with pytest.raises(HierGenError, match="unknown eval split 'val_rc' for question; valid: val, test"):
        load_task(DataConfig(data_dir=qf_dir), ["val_rc"])


def test_argparse_flags_keep_research_names_and_defaults():
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    ns = parser.parse_args([])
    assert DataConfig.from_namespace(ns) == DataConfig()
    assert (ns.dataset, ns.data_dir, ns.data_seed, ns.disamb_num, ns.subset_train_frac, ns.use_specified_decls) == \
        ("question", "data_utils", 0, -1, 1.0, None)
    ns = parser.parse_args(["--dataset", "question_qf_disamb", "--disamb_num", "0", "--exclude_identity",
                            "--use_specified_decls", "1,3"])
    cfg = DataConfig.from_namespace(ns)
    assert cfg.exclude_identity and cfg.decl_counts() == {1, 3}
