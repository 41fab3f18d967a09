"""End-to-end runs of train_transformers.py on tiny models (CPU)."""
from __future__ import annotations

import glob
import json
import os
import shutil
import sys

import pytest

from helpers import (REFERENCE, REFERENCE_CHECKPOINT, RESEARCH_MODEL, assert_one_line, checkpoint_at, eval_events,
                     events, lines, model_flags, qf_path, run_python, train, write_files)
from wandb_offline import history, run_info

TINY = [*RESEARCH_MODEL, "--lr", "1e-3", "--num_warmup_steps", "300", "--batch_size", "8", "--seed", "42"]


def evaluate_reference(data_dir: str, save_dir) -> int:
    """A run that only evaluates the research checkpoint on the data in `data_dir`: its exit code."""
    return train(data_dir, *RESEARCH_MODEL, "--dataset", "question", "--callback", "--max_train_steps", "0",
                 "--model_load_path", str(REFERENCE_CHECKPOINT), "--save_dir", str(save_dir), "--save_prefix", "ref")


@pytest.mark.slow
def test_tiny_qf_learns_the_main_auxiliary(data_dir, tmp_path, capsys):
    """The research code reaches val_aux 0.995 at step 500 with this configuration."""
    code = train(data_dir, *TINY, "--dataset", "question", "--callback", "--eval_keys", "val",
                 "--max_train_steps", "600", "--eval_every", "600", "--save_every", "600",
                 "--save_dir", str(tmp_path), "--save_prefix", "tiny")
    assert code == 0
    final = eval_events(tmp_path / "tiny")[600]
    assert final["val_aux"] >= 0.95


def test_wandb_offline_history_matches_metrics_jsonl(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    code = train(data_dir, *TINY, "--dataset", "question", "--callback", "--eval_keys", "val,test",
                 "--max_train_steps", "6", "--eval_every", "3", "--save_every", "3",
                 "--save_dir", str(tmp_path), "--save_prefix", "wb", "--run_name", "wbtest")
    assert code == 0
    run_dir = tmp_path / "wb_777"
    (wandb_file,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    rows = {row["_step"]: row for row in history(wandb_file)}
    logged = events(run_dir)
    for key in ["loss", "grad_norm", "lr", "iteration"]:
        assert key in rows[1]
    for split in ["val", "test"]:
        for key in [f"curr-{split}-ppl", f"curr-{split}-ppl_first_half",
                    f"curr-{split}-ppl_second_half", f"best/{split}", f"{split}_aux"]:
            assert key in rows[3], key
    assert "test_hierarchical" in rows[3] and "test_linear" in rows[3]
    for event in logged:
        row = rows[event["iteration"]]
        for key, value in event.items():
            assert row[key] == pytest.approx(value, rel=1e-12, abs=0), key
    info = run_info(wandb_file)
    assert info["project"] == "hier-genv" and info["name"] == "wbtest-777"
    args = json.loads((run_dir / "args.json").read_text())
    assert {k: info["config"][k] for k in args} == args


def test_runs_without_wandb_when_logging_is_off(data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` now fails
    code = train(data_dir, *TINY, "--dataset", "question", "--eval_keys", "val", "--max_train_steps", "2",
                 "--eval_every", "2", "--save_dir", str(tmp_path), "--save_prefix", "nowb")
    assert code == 0
    assert len(events(tmp_path / "nowb")) == 4  # 2 evals + 2 steps


def test_checkpoints_and_reevaluation_reproduce_logged_metrics(data_dir, tmp_path):
    code = train(data_dir, *TINY, "--dataset", "question", "--callback", "--eval_keys", "val",
                 "--max_train_steps", "7", "--eval_every", "3", "--save_every", "3",
                 "--save_dir", str(tmp_path), "--save_prefix", "ck")
    assert code == 0
    run_dir = tmp_path / "ck"
    assert sorted(os.listdir(run_dir)) == sorted(
        ["args.json", "metrics.jsonl", *(f"checkpoint_{s}.pth" for s in (0, 3, 6, 7))])
    state = checkpoint_at(run_dir, 3)
    assert {"model_state_dict", "scheduler_state_dict", "optimizer_state_dict"} <= set(state)
    assert all(k.startswith("model.") for k in state["model_state_dict"])
    logged = eval_events(run_dir)[3]
    code = train(data_dir, *TINY, "--dataset", "question", "--callback", "--eval_keys", "val",
                 "--max_train_steps", "0", "--model_load_path", str(run_dir / "checkpoint_3.pth"),
                 "--save_dir", str(tmp_path), "--save_prefix", "re")
    assert code == 0
    again = eval_events(tmp_path / "re")[0]
    for key in ["curr-val-ppl", "curr-val-ppl_first_half", "curr-val-ppl_second_half", "val_aux"]:
        assert again[key] == pytest.approx(logged[key], abs=1e-6), key


@pytest.fixture(scope="module")
def tense_checkpoint(data_dir, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("tense")
    assert train(data_dir, *TINY, "--dataset", "tense", "--eval_keys", "val", "--max_train_steps", "0",
                 "--save_dir", str(out), "--save_prefix", "t") == 0
    return str(out / "t" / "checkpoint_0.pth")


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "nosuch"], "nosuch"),
    (["--eval_keys", "val,nosuch"], "nosuch"),
    (["--batch_size", "0"], "--batch_size"),
    (["--lr", "-1e-3"], "--lr"),
    (["--eval_every", "0"], "--eval_every"),
    (["--vec_dim", "130"], "n_heads"),
    (["--continue_lr"], "--model_load_path"),
    (["--causal_encoder"], "--causal_encoder"),
    (["--not_lm", "--is_prefix_lm"], "--is_prefix_lm"),
    (["--not_lm", "--mode", "enc"], "--not_lm"),
    (["--decoder_n_layers", "3"], "--decoder_n_layers"),
])
def test_bad_flags_are_refused_with_one_line(data_dir, tmp_path, capsys, flags, message):
    code = train(data_dir, *TINY, "--dataset", "question", "--max_train_steps", "1",
                 "--save_dir", str(tmp_path / "out"), *flags)
    assert code == 2
    assert_one_line(capsys.readouterr().err, message)
    assert not (tmp_path / "out").exists()


def test_unwritable_save_dir_is_refused(data_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = train(data_dir, *TINY, "--dataset", "question", "--save_dir", str(blocker / "runs"))
    assert code == 2 and "cannot be created" in capsys.readouterr().err
    assert blocker.read_text() == "not a directory"


def test_bad_checkpoints_are_refused(data_dir, tmp_path, capsys, tense_checkpoint):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x04garbage" * 10)
    wide = tmp_path / "wide"
    assert train(data_dir, *model_flags(2, 64, 4), "--dataset", "question", "--eval_keys", "val",
                 "--max_train_steps", "0", "--save_dir", str(wide), "--save_prefix", "w") == 0
    capsys.readouterr()
    for path in [corrupt, tense_checkpoint, wide / "w" / "checkpoint_0.pth"]:
        code = train(data_dir, *TINY, "--dataset", "question", "--max_train_steps", "1", "--model_load_path",
                     str(path), "--save_dir", str(tmp_path / "out"))
        err = capsys.readouterr().err
        assert code == 2, err
        assert_one_line(err, str(path))
        assert not (tmp_path / "out").exists()


def test_command_line_exit_code_and_one_line(tmp_path):
    proc = run_python("train_transformers.py", "--batch_size", "0", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--batch_size" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_runs_never_share_a_directory(data_dir, tmp_path, capsys):
    args = [*TINY, "--dataset", "question", "--eval_keys", "val", "--max_train_steps", "0",
            "--save_dir", str(tmp_path), "--save_prefix", "same"]
    assert train(data_dir, *args) == 0
    before = sorted(os.listdir(tmp_path / "same"))
    assert train(data_dir, *args) == 2
    assert "already" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "same")) == before


@pytest.mark.parametrize("family, extra_key", [
    (["--is_prefix_lm"], None),
    (["--not_lm", "--decoder_n_layers", "1"], None),
    (["--mode", "enc", "--causal_encoder"], None),
    (["--gated-model"], "l0"),
])
def test_every_model_family_trains_and_evaluates(data_dir, tmp_path, family, extra_key):
    code = train(data_dir, *TINY, "--dataset", "question", "--callback", "--eval_keys", "val,test",
                 "--max_train_steps", "3", "--eval_every", "3", "--save_dir", str(tmp_path),
                 "--save_prefix", "f", *family)
    assert code == 0
    train_events = [e for e in events(tmp_path / "f") if "loss" in e]
    assert [e["iteration"] for e in train_events] == [1, 2, 3]
    assert all(0 <= eval_events(tmp_path / "f")[s]["val_aux"] <= 1 for s in (0, 3))
    if extra_key:
        assert all(extra_key in e for e in train_events)
    state = checkpoint_at(tmp_path / "f", 3)
    assert all(k.startswith("model.") for k in state["model_state_dict"])


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference is absent")
def test_evaluating_the_research_checkpoint(data_dir, tmp_path):
    """Our generated sets stand in for the released ones: val_aux 1.0; test_aux 0.0667 there."""
    expected = json.loads((REFERENCE / "tiny_qf_expected.json").read_text())
    code = evaluate_reference(data_dir, tmp_path)
    assert code == 0
    metrics = eval_events(tmp_path / "ref")[0]
    assert metrics["val_aux"] == 1.0
    assert metrics["test_aux"] == pytest.approx(expected["test_aux"], abs=0.02)
    per_type = {k.split("/", 1)[1] for k in metrics if k.startswith("test_aux_type/")}
    assert per_type == set(expected["test_aux_per_type"])
    assert metrics["test_hierarchical"] + metrics["test_linear"] + metrics["test_other"] == pytest.approx(1)


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference is absent")
def test_the_research_checkpoint_on_released_format_files_placed_by_hand(data_dir, tmp_path):
    """The released val file beside train and test files without their .type file: the run uses
    them as they are (the test types come from the test lines) and writes nothing next to them."""
    folder = tmp_path / "data" / "question_formation_data"
    folder.mkdir(parents=True)
    shutil.copy(REFERENCE / "question.val", folder / "question.val")
    shutil.copy(qf_path("question.train"), folder / "question.train")
    write_files(folder, {"question.test": lines(qf_path("question.test"))[:300]})
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code = evaluate_reference(str(tmp_path / "data"), tmp_path / "runs")
    assert code == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert os.listdir(tmp_path / "data") == ["question_formation_data"]
    metrics = eval_events(tmp_path / "runs" / "ref")[0]
    assert metrics["val_aux"] == 1.0
    types = [t.replace("\t", " ") for t in lines(qf_path("question.test.type"))[:300]]
    assert {k.split("/", 1)[1] for k in metrics if k.startswith("test_aux_type/")} == set(types)


def test_continue_lr_continues_the_schedule_and_step_count(data_dir, tmp_path):
    common = [*model_flags(1, 32, 2, tied=False), "--lr", "1e-3", "--num_warmup_steps", "2", "--dataset", "question",
              "--eval_keys", "val", "--max_train_steps", "6", "--eval_every", "3", "--save_every", "3",
              "--save_dir", str(tmp_path)]
    assert train(data_dir, *common, "--save_prefix", "a") == 0
    assert train(data_dir, *common, "--save_prefix", "b", "--continue_lr",
                 "--model_load_path", str(tmp_path / "a" / "checkpoint_3.pth")) == 0
    lrs = {name: {e["iteration"]: e["lr"] for e in events(tmp_path / name) if "lr" in e} for name in "ab"}
    assert sorted(lrs["b"]) == [4, 5, 6]
    assert all(lrs["b"][step] == lrs["a"][step] for step in (4, 5, 6))


def test_run_name_without_wandb_installed_is_refused(data_dir, tmp_path, monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a))
    code = train(data_dir, *TINY, "--dataset", "question", "--run_name", "x",
                 "--save_dir", str(tmp_path / "out"))
    assert code == 2 and "wandb is not installed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
