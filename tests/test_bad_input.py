"""Bad input of every kind ends in one line on stderr and exit code 2, and touches no file: an
existing run directory named by the command stays byte for byte as it was."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import train_transformers
from data_utils import question
from data_utils.lines import read_examples
from helpers import QF, assert_one_line, checkpoint_at, lines, model_flags, run_python, train, write_files

TINY = [*model_flags(1, 16, 2, tied=False), "--dataset", "question", "--eval_keys", "val", "--max_train_steps", "2",
        "--eval_every", "1", "--save_every", "1"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` with its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    assert train(data_dir, *TINY, "--save_dir", str(out), "--save_prefix", "run") == 0
    return out / "run"


@pytest.fixture
def run_dir(finished_run, tmp_path) -> Path:
    """A copy of a finished tiny run; the bad commands below name it with --resume."""
    return Path(shutil.copytree(finished_run, tmp_path / "runs" / "run"))


def refused(capsys, args: list[str], message: str) -> None:
    assert train_transformers.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert_one_line(err, message)
    assert "Traceback" not in err


def resume_with(data_dir: str, run_dir: Path, *flags: str) -> list[str]:
    return ["--data_dir", data_dir, *TINY, "--save_dir", str(run_dir.parent), "--save_prefix", run_dir.name,
            "--resume", *flags]


@pytest.mark.parametrize("flags, message", [
    (["--seed", "-1"], "--seed must be between 0 and 4294967295"),
    (["--seed", str(2**32)], "--seed must be between 0 and 4294967295"),
    (["--seeds", "1,-3"], "--seeds must be between 0"),
    (["--seeds", ","], "names no seed"),
    (["--eval_keys", ","], "--eval_keys ',' names no split"),
    (["--eval_keys", "val,val"], "lists a split twice"),
    (["--eval_keys", "val,train"], "unknown eval split 'train'"),
    (["--disamb_num", "-2"], "--disamb_num must be -1, 0"),
    (["--gpu_id", "-1"], "--gpu_id must be >= 0"),
    (["--device", "cpu", "--gpu_id", "1"], "--gpu_id 1 would be ignored"),
    (["--save_prefix", "../elsewhere"], "must name one directory inside --save_dir"),
    (["--run_name", ""], "--run_name is empty"),
    (["--data_seed", "-1"], "--data_seed"),
    (["--data_dir", "README.md"], "is a file, not a folder"),
    (["--data_dir", ""], "--data_dir is empty"),
    (["--gated-model", "--gate_l0_penalty", "nan"], "--gate_l0_penalty must be a finite number"),
    (["--encoder_n_layers", str(10**20)], "parameters; at most 1e+10 fit"),
    (["--ff_multiplier", str(10**20)], "parameters; at most 1e+10 fit"),
])
def test_bad_flag_values_leave_the_run_untouched(data_dir, run_dir, capsys, flags, message):
    before = snapshot(run_dir)
    refused(capsys, resume_with(data_dir, run_dir, *flags), message)
    assert snapshot(run_dir) == before


def test_a_save_dir_that_cannot_be_created_is_refused_before_anything_runs(data_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    refused(capsys, ["--data_dir", data_dir, *TINY, "--save_dir", str(blocker / "runs")], "cannot be created")
    assert blocker.read_text() == "mine" and os.listdir(tmp_path) == ["file"]
    if os.path.isdir("/proc"):  # not writable even for root
        refused(capsys, ["--data_dir", data_dir, *TINY, "--save_dir", "/proc/hier_gen_runs"], "cannot be created")


def user_data(root: Path, data_dir: str, **replace: bytes) -> Path:
    """A user's QF folder of released-format files (no .type file); `replace` swaps a file's bytes."""
    folder = root / "question_formation_data"
    generated = Path(data_dir, "question_formation_data")
    write_files(folder, {name: lines(generated / name)[:40] for name in ("question.train", "question.val", "question.test")})
    for name, content in replace.items():
        (folder / name.replace("_", ".")).write_bytes(content)
    return folder


def test_a_data_file_that_is_not_utf8_names_its_line(data_dir, run_dir, tmp_path, capsys):
    good = (QF[0] + "\n").encode()
    folder = user_data(tmp_path / "data", data_dir, question_train=good + b"the n\xe9wt does swim . decl\n")
    before, data_before = snapshot(run_dir), snapshot(folder)
    refused(capsys, resume_with(data_dir, run_dir, "--data_dir", str(folder.parent)),
            f"{folder / 'question.train'}:2: not UTF-8 text")
    assert snapshot(run_dir) == before and snapshot(folder) == data_before


def test_a_data_folder_missing_a_file_is_refused_and_left_alone(data_dir, run_dir, tmp_path, capsys):
    folder = user_data(tmp_path / "data", data_dir)
    (folder / "question.test").unlink()
    before, data_before = snapshot(run_dir), snapshot(folder)
    refused(capsys, resume_with(data_dir, run_dir, "--data_dir", str(folder.parent)), "but not question.test")
    assert snapshot(run_dir) == before and snapshot(folder) == data_before


def test_windows_line_endings_are_named(data_dir, run_dir, tmp_path, capsys):
    folder = user_data(tmp_path / "data", data_dir, question_val=(QF[0] + "\r\n").encode())
    refused(capsys, resume_with(data_dir, run_dir, "--data_dir", str(folder.parent)),
            f"{folder / 'question.val'}:1: Windows line ending")


def test_a_byte_order_mark_is_read_as_the_editor_meant(tmp_path):
    path = tmp_path / "question.val"
    path.write_bytes(("\ufeff" + QF[0] + "\n").encode())
    assert read_examples(str(path), question.parse_line)[0].input[0] == "the"


def test_a_checkpoint_with_nonfinite_weights_is_refused(data_dir, run_dir, tmp_path, capsys):
    state = checkpoint_at(run_dir, 2)
    key, weight = next((k, v) for k, v in state["model_state_dict"].items() if v.is_floating_point())
    weight.view(-1)[0] = float("nan")
    damaged = tmp_path / "damaged.pth"
    torch.save(state, damaged)
    refused(capsys, ["--data_dir", data_dir, *TINY, "--model_load_path", str(damaged), "--max_train_steps", "0"],
            f"{key.removeprefix('model.')} holds NaN or infinite values")


def test_a_damaged_metrics_file_is_named_and_kept(data_dir, run_dir, capsys):
    metrics = run_dir / "metrics.jsonl"
    text = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join(text[:2]) + "{not json\n" + "".join(text[2:]))
    before = snapshot(run_dir)
    refused(capsys, resume_with(data_dir, run_dir), f"{metrics}:3: not a logged event")
    assert snapshot(run_dir) == before


def test_a_run_whose_checkpoints_are_all_unreadable_is_not_restarted_over_them(data_dir, run_dir, capsys):
    for checkpoint in run_dir.glob("checkpoint_*.pth"):
        checkpoint.write_bytes(b"garbage")
    before = snapshot(run_dir)
    refused(capsys, resume_with(data_dir, run_dir), "no checkpoint in it can be read")
    assert snapshot(run_dir) == before


def test_a_run_directory_that_is_a_file_is_refused(data_dir, tmp_path, capsys):
    (tmp_path / "run").write_text("mine")
    refused(capsys, ["--data_dir", data_dir, *TINY, "--save_dir", str(tmp_path), "--save_prefix", "run", "--resume"],
            "is a file")
    assert (tmp_path / "run").read_text() == "mine"


def test_resume_refuses_a_folder_that_is_not_a_run(data_dir, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "ideas.txt").write_text("mine")
    refused(capsys, ["--data_dir", data_dir, *TINY, "--save_dir", str(tmp_path), "--save_prefix", "notes",
                     "--resume"], "holds files that are not a run's (ideas.txt)")
    assert os.listdir(tmp_path / "notes") == ["ideas.txt"]


def test_the_command_line_prints_no_traceback(tmp_path):
    """The same through the real entry point: a subprocess, exit code 2, one line."""
    proc = run_python("train_transformers.py", "--seed", "-1", "--save_dir", str(tmp_path), timeout=120)
    assert proc.returncode == 2
    assert_one_line(proc.stderr, "--seed")
    assert os.listdir(tmp_path) == []
