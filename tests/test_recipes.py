"""Recipes: every file expands to its runs' commands; a half-done recipe finishes what is missing
and only that; the SLURM path trains as arrays and reports after them."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from data_utils.lines import read_text_lines
from helpers import REPO, checkpoint_at, write_files, write_run
from recipes import recipe as recipes
from recipes.__main__ import main as recipes_main
from recipes.runner import shares, train_locally, unfinished

# ti_complexity reads the default tense files (here their first lines); shrunk to seconds.
SHRUNK = ["ti_complexity", "--steps", "20", "--seeds", "1"]


@pytest.fixture(scope="module")
def tiny_ti(data_dir, tmp_path_factory) -> str:
    """The first lines of every generated TI file: 1,000 training lines, 100 of each evaluation split."""
    source = os.path.join(data_dir, "tense_inflection_data")
    out = tmp_path_factory.mktemp("tiny_ti")
    write_files(out / "tense_inflection_data", {name: read_text_lines(os.path.join(source, name))[:1000 if name == "tense.train" else 100]
                                                for name in os.listdir(source)})
    return str(out)


@pytest.mark.parametrize("name", recipes.names())
def test_every_recipe_expands_to_one_command_per_condition(name):
    assert set(recipes.names()) >= {"qf_disamb", "qf_diversity", "ti_diversity", "ti_complexity"}
    for scale in recipes.SCALES:
        recipe = recipes.load(name, scale)
        assert "Qin, Saphra & Alvarez-Melis" in recipe.claim and len(recipe.conditions) >= 2
        assert len(recipe.seeds) >= 5 and recipe.max_train_steps == {"mini": 3000, "paper": 300000}[scale]
        for condition in recipe.conditions:
            command = recipe.command(condition, list(recipe.seeds), "S", "D")
            joined = shlex.join(command)
            assert f"--seeds {','.join(map(str, recipe.seeds))} --save_dir S --save_prefix {condition}" in joined
            assert command[-1] == "--resume"


def test_expansion_shrinks_and_groups_unfinished_seeds_by_their_resume_step(tmp_path):
    recipe = recipes.load("qf_disamb", "mini", steps=40, seeds=3)
    assert recipe.seeds == (0, 1, 2) and recipe.max_train_steps == 40
    assert recipe.command("disamb1000", [0], "S", "D")[-13:-9] == ["--max_train_steps", "40", "--disamb_num", "1000"]
    for prefix, steps in [("disamb0_seed0", [0, 40]), ("disamb0_seed1", [0, 20]), ("disamb0_seed2", [0, 20]),
                          ("disamb1000_seed1", [0])]:
        write_run(tmp_path / prefix, {"save_prefix": prefix}, None)
        for step in steps:
            (tmp_path / prefix / f"checkpoint_{step}.pth").touch()
    # A SLURM run directory carries its job id; the furthest trained of two counts.
    write_run(tmp_path / "disamb1000_seed1_77", {"save_prefix": "disamb1000_seed1"}, None)
    (tmp_path / "disamb1000_seed1_77" / "checkpoint_40.pth").touch()
    assert recipes.progress(recipe, str(tmp_path))[("disamb1000", 1)] == 40
    assert unfinished(recipe, str(tmp_path)) == {"disamb0": [1, 2], "disamb1000": [0, 2]}
    # Steps left: 20, 20 (resuming at 20), 40, 40 (new); shares of equal steps left.
    assert shares(recipe, str(tmp_path), 1) == [[("disamb0", [1, 2]), ("disamb1000", [0, 2])]]
    assert shares(recipe, str(tmp_path), 2) == [[("disamb0", [1, 2])], [("disamb1000", [0, 2])]]
    assert shares(recipe, str(tmp_path), 3) == [[("disamb0", [1, 2])], [("disamb1000", [0])], [("disamb1000", [2])]]


def test_three_conditions_on_two_cores_split_one_condition_between_them(tmp_path):
    recipe = recipes.load("ti_complexity", "mini")
    assert shares(recipe, str(tmp_path), 2) == [[("simple", [0, 1, 2, 3, 4]), ("complex", [0, 1])],
                                                [("complex", [2, 3, 4]), ("both", [0, 1, 2, 3, 4])]]
    assert shares(recipe, str(tmp_path), 16) == [[(c, [s])] for c in recipe.conditions for s in recipe.seeds]


def test_unknown_recipe_is_one_line(capsys):
    assert recipes_main(["status", "nope"]) == 2
    assert "no recipe 'nope'; recipes: qf_disamb" in capsys.readouterr().err


@pytest.mark.slow
def test_a_half_done_recipe_trains_only_what_is_missing(tiny_ti, tmp_path, capsys):
    out = str(tmp_path / "exp")
    train_locally(recipes.load("ti_complexity", steps=20, seeds=1), out, tiny_ti, jobs=2)
    runs = tmp_path / "exp" / "runs"
    whole = checkpoint_at(runs / "complex_seed0", 20)["model_state_dict"]
    finished = os.stat(runs / "simple_seed0" / "checkpoint_20.pth").st_mtime_ns
    # complex was killed after its first checkpoint; both never started.
    os.remove(runs / "complex_seed0" / "checkpoint_20.pth")
    for name in os.listdir(runs / "both_seed0"):
        os.remove(runs / "both_seed0" / name)
    os.rmdir(runs / "both_seed0")
    capsys.readouterr()
    assert recipes_main(["status", *SHRUNK, "--out", out]) == 0
    assert "simple: 1 done; 0 running; 0 missing\n  complex: 0 done; 0 running; 1 missing (0@0)" in capsys.readouterr().out
    assert recipes_main(["run", *SHRUNK, "--out", out, "--data_dir", tiny_ti, "--jobs", "2"]) == 0
    assert os.stat(runs / "simple_seed0" / "checkpoint_20.pth").st_mtime_ns == finished
    resumed = checkpoint_at(runs / "complex_seed0", 20)["model_state_dict"]
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)  # the weights of an uninterrupted run
    assert recipes_main(["status", *SHRUNK, "--out", out]) == 0
    assert capsys.readouterr().out.count("1 done; 0 running; 0 missing") == 3
    assert os.path.isfile(tmp_path / "exp" / "report" / "index.html")
    # The page names the conditions as the recipe does, in its order.
    conditions = (tmp_path / "exp" / "report" / "conditions.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in conditions[1:]] == ["simple", "complex", "both"]
    assert sorted(os.listdir(tmp_path / "exp" / "logs")) == ["both_seeds0.log", "complex_seeds0.log", "simple_seeds0.log"]


@pytest.mark.slurm
def test_slurm_trains_arrays_then_reports(slurm_cluster, tiny_ti, tmp_path):
    out = tmp_path / "exp"
    sbatch = "--gres=none --cpus-per-task=1 --mem=1G --time=10"
    done = subprocess.run([sys.executable, "-m", "recipes", "run", "ti_complexity", "--steps", "20", "--seeds", "2",
                           "--out", str(out), "--data_dir", tiny_ti, "--slurm", "--seeds_per_task", "2",
                           "--sbatch", sbatch], cwd=REPO, env={**slurm_cluster.env, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    jobs = json.loads((out / "slurm_jobs.json").read_text())
    assert [j["condition"] for j in jobs] == ["simple", "complex", "both", None]
    assert all(j["seeds"] == [0, 1] for j in jobs[:3])
    records = slurm_cluster.wait(jobs[-1]["job"], timeout=300)
    assert [r["JobState"] for r in records] == ["COMPLETED"], [slurm_cluster.log(r) for r in records]
    for j in jobs[:3]:  # one task per condition trained both seeds
        (task,) = slurm_cluster.jobs(j["job"])
        assert task["JobState"] == "COMPLETED"
        for seed in (0, 1):
            assert (out / "runs" / f"{j['condition']}_seed{seed}_{task['JobId']}" / "checkpoint_20.pth").exists()
    assert (out / "report" / "index.html").exists()
    status = subprocess.run([sys.executable, "-m", "recipes", "status", "ti_complexity", "--steps", "20", "--seeds",
                             "2", "--out", str(out)], cwd=REPO, env=slurm_cluster.env, capture_output=True, text=True)
    assert status.stdout.count("2 done; 0 running; 0 missing") == 3


@pytest.mark.slow
def test_ctrl_c_checkpoints_every_running_trainer_and_says_how_to_continue(tiny_ti, tmp_path):
    out = tmp_path / "exp"
    shrunk = ["ti_complexity", "--steps", "100000", "--seeds", "2", "--out", str(out)]
    runner = subprocess.Popen([sys.executable, "-m", "recipes", "run", *shrunk, "--data_dir", tiny_ti, "--jobs", "2"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Shares of 2 cores: simple 0,1 then complex 0; complex 1 then both 0,1. Wait for both first
    # processes to have evaluated at step 200.
    logs = [out / "logs" / "simple_seeds0,1.log", out / "logs" / "complex_seeds1.log"]
    deadline = time.monotonic() + 120
    while not all(log.exists() and "step 200:" in log.read_text() for log in logs):
        assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
        time.sleep(0.2)
    runner.send_signal(signal.SIGINT)
    stdout, stderr = runner.communicate(timeout=120)
    assert runner.returncode == 2, stderr
    assert stderr.strip().splitlines()[-1] == ("error: training did not finish: simple (seeds 0,1; stopped: run again "
                                               "to continue); complex (seeds 1; stopped: run again to continue)")
    assert "Traceback" not in stderr
    assert sorted(os.listdir(out / "logs")) == sorted(log.name for log in logs)  # no pid file left; nothing else began
    for run in ("simple_seed0", "simple_seed1", "complex_seed1"):
        step = recipes.last_step(str(out / "runs" / run))
        assert 200 <= step < 100000  # checkpointed where the stop found it
    assert not (out / "runs" / "complex_seed0").exists() and not (out / "runs" / "both_seed0").exists()
