"""Run directories: finding them, reading metrics.jsonl, grouping into conditions, common steps."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from analysis.runs import (PARALLEL_FROM, common_steps, condition_names, curves, find_runs, read_metrics, read_runs,
                           run_table)
from helpers import ARGS, evals, write_run
from util import HierGenError


def test_find_runs_takes_paths_and_globs_and_skips_other_folders(tmp_path):
    for name in ("b", "a", "c"):
        write_run(tmp_path / "sweep" / name, ARGS, [])
    (tmp_path / "sweep" / "analysis").mkdir()  # e.g. an output folder beside the runs
    (tmp_path / "sweep" / "notes.txt").write_text("")
    runs = find_runs([str(tmp_path / "sweep" / "*"), str(tmp_path / "sweep" / "a")])
    assert [r.name for r in runs] == ["a", "b", "c"]  # each once
    assert [r.name for r in find_runs([str(tmp_path / "sweep" / "c")])] == ["c"]


def test_runs_sharing_a_folder_name_are_named_by_path(tmp_path):
    paths = [write_run(tmp_path / group / "seed1", ARGS, []) for group in ("D50", "D100")]
    assert [r.name for r in find_runs(paths)] == [os.path.normpath(p) for p in paths]


@pytest.mark.parametrize("make, message", [
    (lambda tmp: [str(tmp / "missing")], "no such run directory"),
    (lambda tmp: [str(tmp / "nothing*")], "no such run directory"),
    (lambda tmp: [str(tmp)], "no run directory"),
])
def test_find_runs_refuses_what_holds_no_run(tmp_path, make, message):
    with pytest.raises(HierGenError, match=message):
        find_runs(make(tmp_path))


def test_read_metrics_keeps_the_named_series_one_row_per_step(tmp_path):
    events = evals([0, 10, 20], [0.1, 0.5, 0.9], test_hierarchical=[0.1, 0.5, 0.9])
    events[1]["test_aux_type/det n_s quest aux_s det n_s"] = 0.25
    events.append({"test_aux": 0.7, "iteration": 20})  # a later line for a step wins
    run = find_runs([write_run(tmp_path / "r", ARGS, events, tail='{"test_aux": 0.3, "itera')])[0]
    table = read_metrics(run, ["test_aux", "test_aux_type"])
    assert list(table.index) == [0, 10, 20]  # the torn last line is a running job's: skipped
    assert sorted(table.columns) == ["test_aux", "test_aux_type/det n_s quest aux_s det n_s"]
    assert table["test_aux"].tolist() == [0.1, 0.5, 0.7]
    assert np.isnan(table.iloc[1, 1]) and table.iloc[0, 1] == 0.25


def test_reading_many_runs_in_worker_processes_equals_reading_them_here(tmp_path):
    rng = np.random.default_rng(0)
    paths = [write_run(tmp_path / f"seed{i}", {**ARGS, "seed": i},
                       evals(range(0, 50, 10), rng.uniform(size=5), test_linear=rng.uniform(size=5)))
             for i in range(PARALLEL_FROM)]
    runs = find_runs(paths)
    table, here = read_runs(runs, ["test_aux", "test_linear"], workers=1)
    _, workers = read_runs(runs, ["test_aux", "test_linear"], workers=2)
    assert list(here) == list(workers) == list(table["run"])
    for name, frame in here.items():
        pd.testing.assert_frame_equal(workers[name], frame)


@pytest.mark.parametrize("bad", ['{"test_aux": 0.5, "iteration"', '{"test_aux": 1} {"test_aux": 2, "iteration": 3}'])
def test_a_line_that_is_not_one_json_event_is_named(tmp_path, bad):
    events = evals([0, 10], [0.1, 0.5])
    path = write_run(tmp_path / "r", ARGS, events[:2], tail=bad + "\n" + json.dumps(events[3]) + "\n")
    with pytest.raises(HierGenError, match=r"metrics.jsonl:3: not a JSON event"):
        read_metrics(find_runs([path])[0], ["test_aux"])


def test_read_metrics_refuses_a_run_without_metrics(tmp_path):
    run = find_runs([write_run(tmp_path / "r", ARGS, None)])[0]
    with pytest.raises(HierGenError, match="no metrics.jsonl"):
        read_metrics(run, ["test_aux"])


def runs_with(tmp_path, variants: list[dict]):
    return find_runs([write_run(tmp_path / f"r{i}", {**ARGS, **v}, evals([0, 10], [0.1, 0.2]))
                      for i, v in enumerate(variants)])


def test_conditions_ignore_seed_and_bookkeeping_and_name_what_differs(tmp_path):
    runs = runs_with(tmp_path, [
        {"seed": 1, "dataset": "question_D100"},
        {"seed": 2, "dataset": "question_D100", "save_dir": "elsewhere", "device": "cuda:1", "gpu_id": 1,
         "run_name": "x", "wandb_mode": "offline", "resume": True, "eval_batch_size": 256, "data_dir": "/d",
         "model_load_path": "m.pth", "seeds": "2,3"},
        {"seed": 1, "dataset": "question_D50"},
    ])
    assert condition_names(runs) == ["dataset=question_D100", "dataset=question_D100", "dataset=question_D50"]
    table = run_table(runs)
    assert list(table["condition"].cat.categories) == ["dataset=question_D50", "dataset=question_D100"]
    assert table["run"].tolist() == ["r2", "r0", "r1"]


def test_conditions_name_every_differing_flag_and_order_numbers_by_value(tmp_path):
    runs = runs_with(tmp_path, [{"lr": 0.001, "encoder_n_layers": 2}, {"lr": 5e-05, "encoder_n_layers": 2},
                                {"lr": 0.001, "encoder_n_layers": 6}, {"lr": 0.001, "encoder_n_layers": 2,
                                                                         "seed": 7}])
    table = run_table(runs)
    assert list(table["condition"].cat.categories) == [
        "encoder_n_layers=2 lr=5e-05", "encoder_n_layers=2 lr=0.001", "encoder_n_layers=6 lr=0.001"]
    assert table.groupby("condition", observed=True).size().tolist() == [1, 2, 1]


def test_one_condition_is_named_by_its_dataset(tmp_path):
    assert set(condition_names(runs_with(tmp_path, [{"seed": 1}, {"seed": 2}]))) == {"dataset=question"}


def test_runs_are_compared_on_the_steps_all_of_their_condition_logged(tmp_path):
    a = write_run(tmp_path / "a", {**ARGS, "seed": 1}, evals([0, 10, 20, 30], [0.1, 0.2, 0.3, 0.4]))
    b = write_run(tmp_path / "b", {**ARGS, "seed": 2}, evals([0, 10, 20], [0.5, 0.6, 0.7]))
    c = write_run(tmp_path / "c", {**ARGS, "lr": 1.0}, evals([0, 30], [0.8, 0.9]))
    long = curves(find_runs([a, b, c]), ["test_aux"])
    assert long.groupby("run")["step"].apply(list).to_dict() == {"a": [0, 10, 20], "b": [0, 10, 20], "c": [0, 30]}
    assert long.loc[long["run"] == "a", "value"].tolist() == [0.1, 0.2, 0.3]


def test_a_metric_never_logged_is_refused(tmp_path):
    runs = find_runs([write_run(tmp_path / "a", ARGS, evals([0, 10], [0.1, 0.2]))])
    table = run_table(runs)
    with pytest.raises(HierGenError, match="metric val_aux was never logged by run a"):
        common_steps({"a": read_metrics(runs[0], ["val_aux"])}, table, "val_aux")


def test_conditions_by_prefix_are_the_save_prefixes_without_seed_in_the_order_given(tmp_path):
    runs = runs_with(tmp_path, [{"save_prefix": "simple_seed0", "seed": 0, "include_present_simple_verb": True},
                                {"save_prefix": "both_seed1", "seed": 1},
                                {"save_prefix": "simple_seed1", "seed": 1, "include_present_simple_verb": True},
                                {"save_prefix": "both_seed0", "seed": 0}])
    assert condition_names(runs) == ["include_present_simple_verb=true", "include_present_simple_verb=null"] * 2
    table = run_table(runs, by="prefix")
    assert list(table["condition"].cat.categories) == ["simple", "both"]
    assert table["run"].tolist() == ["r0", "r2", "r3", "r1"]
