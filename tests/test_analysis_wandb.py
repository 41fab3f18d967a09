"""import-wandb with a stand-in for wandb.Api(): run directories that the analyses read."""
from __future__ import annotations

import json
import os
import sys

import pytest

from analysis import wandb_import
from analysis.__main__ import main as analysis
from analysis.wandb_import import import_project
from helpers import assert_one_line, events, read_csv, run_python
from util import HierGenError


class StandInRun:
    def __init__(self, name: str, run_id: str, config: dict, rows: list[dict]):
        self.name, self.id, self.config, self.rows = name, run_id, config, rows

    def scan_history(self):
        return iter(self.rows)


class StandInApi:
    """The part of wandb.Api() that import-wandb uses."""

    def __init__(self, runs: list[StandInRun]):
        self.listed, self._runs = [], runs

    def runs(self, path: str, filters: dict | None = None):
        """W&B evaluates the query on its server; this stand-in knows equality on config and name."""
        self.listed.append((path, filters))
        field = {"display_name": lambda run: run.name}
        conditions = (filters or {}).get("$and", [])
        return iter([run for run in self._runs if all(
            field.get(key, lambda r: r.config.get(key.removeprefix("config.")))(run) == value
            for condition in conditions for key, value in condition.items())])


def history(values: list[float]) -> list[dict]:
    """W&B rows as the trainer logs them: per-step rows and evaluation rows, with W&B's own keys."""
    rows = []
    for k, value in enumerate(values):
        step = 10 * k
        rows.append({"_step": step, "_runtime": 1.5 * k, "loss": 2.0 - value, "lr": 1e-4, "iteration": step,
                     "test_aux": None})
        rows.append({"_step": step, "_timestamp": 1e9, "test_aux": value, "test_hierarchical": value,
                     "test_linear": 1 - value, "iteration": step, "media": {"_type": "image-file"}})
    rows.append({"_step": 99, "_runtime": 9.0})  # W&B's own bookkeeping row: nothing to keep
    return rows


def project() -> StandInApi:
    config = {"dataset": "question", "lr": 1e-4, "_wandb": {"cli_version": "0"}}
    return StandInApi([
        StandInRun("qf_seed1", "a1", {**config, "seed": 1}, history([0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0])),
        StandInRun("qf_dup", "b2", {**config, "seed": 2}, history([0.0] * 7)),
        StandInRun("qf_dup", "c3", {**config, "seed": 3}, history([0.2, 0.9, 0.1, 0.9, 0.1, 0.9, 0.1])),
        StandInRun("lr/3e-4 run", "d4", {**config, "lr": 3e-4, "seed": 1}, history([0.5] * 7)),
    ])


def test_each_wandb_run_becomes_a_run_directory(tmp_path):
    api = project()
    written = import_project("me/hier-genv", str(tmp_path / "runs"), api=api)
    assert api.listed == [("me/hier-genv", {})]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["lr_3e-4_run", "qf_dup_b2", "qf_dup_c3",
                                                                   "qf_seed1"]
    assert len(written) == 4
    run = tmp_path / "runs" / "qf_seed1"
    assert json.loads((run / "args.json").read_text()) == {"dataset": "question", "lr": 1e-4, "seed": 1}
    logged = events(run)
    assert len(logged) == 14
    assert logged[0] == {"loss": 2.0, "lr": 1e-4, "iteration": 0}
    assert logged[3] == {"test_aux": 0.5, "test_hierarchical": 0.5, "test_linear": 0.5, "iteration": 10}


def test_imported_runs_go_through_dynamics(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "analysis"
    import_project("me/hier-genv", str(runs), api=project())
    assert analysis(["dynamics", str(runs / "*"), "--out", str(out)]) == 0
    table = read_csv(out / "runs.csv").set_index("run")
    assert table.loc["qf_seed1", "commitment"] == "hierarchical"
    assert table.loc["qf_dup_b2", "commitment"] == "linear"
    assert table.loc["qf_dup_c3", "oscillations"] == 5  # 0.9 and 0.1 reach the thresholds
    assert table.loc["qf_seed1", "condition"] == "lr=0.0001"
    assert table["end_seen_acc"].isna().all()  # an imported run names no data folder here


def test_reimporting_replaces_the_runs_files(tmp_path):
    runs = tmp_path / "runs"
    import_project("me/hier-genv", str(runs), api=project())
    (runs / "qf_seed1" / "checkpoint_0.pth").write_bytes(b"x")
    first = (runs / "qf_seed1" / "metrics.jsonl").read_text()
    import_project("me/hier-genv", str(runs), api=project())
    assert (runs / "qf_seed1" / "metrics.jsonl").read_text() == first
    assert (runs / "qf_seed1" / "checkpoint_0.pth").read_bytes() == b"x"


def test_filters_reach_the_api_as_one_query_and_select_runs(tmp_path, monkeypatch, capsys):
    api = project()
    monkeypatch.setattr(wandb_import, "_wandb_api", lambda: api)
    assert analysis(["import-wandb", "me/hier-genv", "--out", str(tmp_path / "runs"),
                     "--filter", "config.lr=0.0003", "--filter", "config.dataset=question"]) == 0
    assert api.listed == [("me/hier-genv", {"$and": [{"config.lr": 0.0003}, {"config.dataset": "question"}]})]
    assert "imported 1 runs" in capsys.readouterr().out
    assert os.listdir(tmp_path / "runs") == ["lr_3e-4_run"]
    assert analysis(["import-wandb", "me/hier-genv", "--out", str(tmp_path / "none"), "--filter", "state=crashed"]) == 2
    assert "has no runs that pass the filters" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["config.lr", "=3", ""])
def test_a_filter_that_is_not_key_value_is_refused(text):
    with pytest.raises(HierGenError, match="expected KEY=VALUE"):
        wandb_import.parse_filters([text])


class Unreachable(StandInApi):
    def runs(self, path: str, filters: dict | None = None):
        raise RuntimeError("Could not find project hier-genv\\nmore detail")


@pytest.mark.parametrize("path, api, message", [
    ("hier-genv", project(), "expected ENTITY/PROJECT"),
    ("me/empty", StandInApi([]), "has no runs"),
    ("me/hier-genv", Unreachable([]), "cannot list the runs of W&B project me/hier-genv: Could not find project"),
])
def test_bad_projects_are_refused_before_writing(tmp_path, path, api, message):
    with pytest.raises(HierGenError, match=message):
        import_project(path, str(tmp_path / "runs"), api=api)
    assert not (tmp_path / "runs").exists()


def test_the_command_uses_wandb_and_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(wandb_import, "_wandb_api", lambda: project())
    assert analysis(["import-wandb", "me/hier-genv", "--out", str(tmp_path / "runs")]) == 0
    assert "imported 4 runs" in capsys.readouterr().out
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "wandb", None)  # a machine without wandb
    assert analysis(["import-wandb", "me/hier-genv", "--out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert_one_line(err, "pip install wandb", "wandb login")
    assert not (tmp_path / "other").exists()


def test_analysis_and_plot_do_not_import_wandb():
    code = "import sys, plot, analysis.__main__; assert 'wandb' not in sys.modules"
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr


def test_an_out_folder_that_cannot_be_made_is_refused_before_asking_wandb(tmp_path):
    (tmp_path / "file").write_text("mine")
    api = project()
    with pytest.raises(HierGenError, match="--out .* cannot be created: .* is a file"):
        import_project("me/hier-genv", str(tmp_path / "file" / "runs"), api=api)
    assert api.listed == [] and (tmp_path / "file").read_text() == "mine"
