"""Every loaded line is validated; a bad line names file:line and what is wrong."""
from pathlib import Path

import pytest

from data_utils import generate, question, tense
from data_utils.lines import read_examples
from helpers import QF, QF_TEST, QF_TYPE, REFERENCE, assert_one_line, run_python, write_files
from util import HierGenError

GOOD = QF[:2]
BAD_QF = {
    "wrong transformation": ("the newts do swim . quest\tthe newts do swim ?", "not the quest form"),
    "unknown word": ("the gnu does swim . decl\tthe gnu does swim .", "unknown word 'gnu'"),
    "ungrammatical order": ("the does newt swim . decl\tthe does newt swim .", "ungrammatical word order"),
    "missing tab": ("the newt does swim . decl the newt does swim .", "one tab"),
    "unknown marker": ("the newt does swim . ask\tthe newt does swim .", "unknown marker 'ask'"),
    "empty line": ("", "empty line"),
    "agreement": ("the newts does swim . decl\tthe newts does swim .", "does not agree"),
    "no final period": ("the newt does swim decl\tthe newt does swim", "must end with ' .'"),
}
BAD_TI = {
    "present in input": ("the newt swims . PAST\tthe newt swims .", "unknown word 'swims'"),
    "wrong agreement": ("the newts swam . PRESENT\tthe newts swims .", "not the PRESENT form"),
    "QF marker": ("the newt swam . decl\tthe newt swam .", "unknown marker 'decl'"),
}


@pytest.mark.parametrize("name", BAD_QF)
def test_bad_qf_line_names_file_and_line(tmp_path, name):
    line, message = BAD_QF[name]
    path = tmp_path / "question.train"
    path.write_text("\n".join(GOOD + [line]) + "\n")
    with pytest.raises(HierGenError) as error:
        read_examples(str(path), question.parse_line)
    assert f"{path}:3: " in str(error.value) and message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", BAD_TI)
def test_bad_ti_line_names_file_and_line(tmp_path, name):
    line, message = BAD_TI[name]
    path = tmp_path / "tense.train"
    path.write_text("the newt swam . PAST\tthe newt swam .\n" + line + "\n")
    with pytest.raises(HierGenError, match=f"tense.train:2: .*{message}"):
        read_examples(str(path), tense.parse_line)


def test_typed_subsplit_line_of_the_wrong_kind_is_rejected(tmp_path):
    path = tmp_path / "tense.val_rc"
    path.write_text("my yak near the zebras ate . PRESENT my yak near the zebras eats .\n")
    with pytest.raises(HierGenError, match="tense.val_rc:1: .*does not belong in sub-split rc"):
        read_examples(str(path), tense.subsplit_parser("rc"), spaced=True)


def test_reference_files_pass_the_validator():
    if not REFERENCE.exists():
        pytest.skip("../shared/reference is absent")
    assert len(read_examples(str(REFERENCE / "question.val"), question.parse_line)) == 1000
    assert len(read_examples(str(REFERENCE / "tense.val"), tense.parse_line)) == 1000
    for kind in tense.SUBSPLITS:
        read_examples(str(REFERENCE / f"tense.val_{kind}"), tense.subsplit_parser(kind), spaced=True)


def _qf_dir_with_bad_train(root: Path) -> Path:
    write_files(root / "question_formation_data", {
        "question.train": GOOD + [BAD_QF["wrong transformation"][0]], "question.val": GOOD, "question.test": QF_TEST,
        "question.test.type": QF_TYPE})
    return root / "question_formation_data" / "question.train"


def test_generator_cli_reports_a_bad_user_file_in_one_line_with_exit_2(tmp_path, capsys):
    bad = _qf_dir_with_bad_train(tmp_path)
    assert generate.main(["--task", "question", "--data_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert_one_line(err, f"{bad}:3: ")
    assert "Traceback" not in err


def test_generator_module_exits_2_without_traceback(tmp_path):
    _qf_dir_with_bad_train(tmp_path)
    run = run_python("-m", "data_utils.generate", "--task", "question", "--data_dir", str(tmp_path))
    assert run.returncode == 2 and run.stderr.startswith("error: ")
    assert_one_line(run.stderr)


def test_mismatched_type_file_is_rejected(tmp_path):
    bad = _qf_dir_with_bad_train(tmp_path)
    bad.write_text("\n".join(GOOD) + "\n")
    (bad.parent / "question.test.type").write_text("det n_s quest\taux_s\n")
    assert generate.main(["--task", "question", "--data_dir", str(tmp_path)]) == 2


@pytest.mark.parametrize("flags, message", [
    (["--task", "nosuch"], "argument --task: invalid choice"),
    (["--data_seed", "-1"], "--data_seed must be >= 0"),
    (["--data_seed", "x"], "invalid int value"),
    (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
])
def test_generator_flags_are_refused_in_one_line(tmp_path, capsys, flags, message):
    assert generate.main([*flags, "--data_dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert_one_line(err, message)
    assert not (tmp_path / "data").exists()


def test_generator_refuses_a_data_dir_that_is_a_file_before_generating(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert generate.main(["--task", "question", "--data_dir", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and (tmp_path / "file").read_text() == "mine"
