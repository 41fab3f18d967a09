"""The run-dynamics definitions on small hand-computed series, and the per-condition statistics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scipy.stats import mannwhitneyu

from analysis.dynamics import (Settings, bimodality, bootstrap_intervals, commitment, comparison_sentence,
                               comparisons_frame, dynamics, end_value, late_tv_per_10k, oscillations, regime,
                               total_variation)
from analysis.runs import find_runs
from helpers import ARGS, write_run

STEPS = np.array([0, 10, 20, 30, 40, 50, 60]) * 1000.0
VALUES = np.array([0.0, 0.5, 0.2, 0.9, 0.95, 0.05, 1.0])


def test_end_value_is_the_mean_of_the_last_m_evaluations():
    assert end_value(np.arange(1.0, 8.0)) == pytest.approx(5.0)  # mean of 3..7
    assert end_value(np.arange(1.0, 8.0), m=2) == pytest.approx(6.5)
    assert end_value(np.array([0.2, 0.4])) == pytest.approx(0.3)  # fewer than m: all of them


def test_total_variation_by_hand():
    assert total_variation(STEPS, VALUES) == pytest.approx(0.5 + 0.3 + 0.7 + 0.05 + 0.9 + 0.95)
    assert total_variation(STEPS, VALUES, start=20_000, end=40_000) == pytest.approx(0.7 + 0.05)


def test_late_tv_is_over_the_last_third_per_10k_steps():
    # The window [40k, 60k] holds 0.95 -> 0.05 -> 1.0 (TV 1.85) and spans 2 x 10k steps.
    assert late_tv_per_10k(STEPS, VALUES) == pytest.approx(1.85 / 2)
    assert np.isnan(late_tv_per_10k(np.array([0.0]), np.array([0.5])))


def test_total_variation_invariants():
    rng = np.random.default_rng(0)
    steps = np.arange(50) * 2000.0
    for _ in range(20):
        a = rng.uniform(size=50)
        tv = total_variation(steps, a)
        assert tv >= abs(a[-1] - a[0])
        assert total_variation(steps, a, start=20_000, end=60_000) <= tv
        monotone = np.sort(a)
        assert total_variation(steps, monotone) == pytest.approx(monotone[-1] - monotone[0])
    assert total_variation(steps, np.full(50, 0.3)) == 0


@pytest.mark.parametrize("values, switches", [
    (VALUES, 3),                                        # L, H, L, H
    ([0.5, 0.95, 0.5, 0.89, 0.95, 0.11, 0.1], 1),       # in-between values keep the state
    ([0.5, 0.89, 0.11, 0.5, 0.2], 0),                   # never reaches either threshold
    ([0.9, 0.1, 0.9, 0.1], 3),                          # the thresholds themselves count
    ([0.05, 0.0, 0.08], 0),                             # stays L
])
def test_oscillations_count_switches_with_hysteresis(values, switches):
    assert oscillations(np.array(values)) == switches


@pytest.mark.parametrize("hierarchical, linear, expected", [
    (0.95, 0.0, "hierarchical"),
    (0.9499, 0.04, "uncommitted"),
    (0.0, 0.95, "linear"),
    (0.5, 0.5, "uncommitted"),
    (np.nan, np.nan, None),
])
def test_commitment_at_the_thresholds(hierarchical, linear, expected):
    assert commitment(hierarchical, linear) == expected


def test_dip_test_and_mixture_agree_on_clear_cases():
    rng = np.random.default_rng(1)
    unimodal = bimodality(np.clip(rng.normal(0.5, 0.08, 20), 0, 1))
    bimodal = bimodality(np.r_[rng.uniform(0.0, 0.05, 10), rng.uniform(0.95, 1.0, 10)])
    assert unimodal["dip_p"] > 0.1 and unimodal["bic_1"] < unimodal["bic_2"] and unimodal["bimodal"] is False
    assert bimodal["dip_p"] < 0.01 and bimodal["bic_2"] < bimodal["bic_1"] and bimodal["bimodal"] is True


def test_bimodality_needs_four_seeds():
    out = bimodality(np.array([0.1, 0.9, 0.5]))
    assert np.isnan(out["dip"]) and np.isnan(out["bic_1"]) and out["bimodal"] is pd.NA


def seeds(n: int, stable, commitment, seen=np.nan, unseen=np.nan) -> pd.DataFrame:
    """A condition's rows of runs.csv; per-seed lists or one value for all."""
    rows = pd.DataFrame({"stable": stable, "commitment": commitment, "end_seen_acc": seen,
                         "end_unseen_acc": unseen}, index=range(n))
    rows["stable"] = rows["stable"].astype("boolean")
    return rows


@pytest.mark.parametrize("rows, expected", [
    (seeds(10, True, ["hierarchical"] * 8 + ["linear"] * 2), "hierarchical"),
    (seeds(10, [True] * 9 + [False], ["linear"] * 9 + ["hierarchical"]), "linear"),
    # 8 hierarchical seeds but one of them unstable: 7/10 < 80%.
    (seeds(10, [True] * 7 + [False] + [True] * 2, ["hierarchical"] * 8 + ["uncommitted"] * 2, 0.9, 0.9),
     "unstable"),
    (seeds(10, True, "uncommitted", seen=0.9, unseen=[0.1] * 8 + [0.6] * 2), "memorization"),
    (seeds(10, True, "uncommitted", seen=0.9, unseen=[0.1] * 7 + [0.6] * 3), "unstable"),
    (seeds(10, [True] * 7 + [False] * 3, "uncommitted", seen=0.9, unseen=0.1), "unstable"),
    (seeds(10, [False] * 10, "hierarchical"), "unstable"),
    # Stable but undecidable: no rule shares, or no seen/unseen split to rule memorization out.
    (seeds(10, True, None), None),
    (seeds(10, True, "uncommitted"), None),
    (seeds(10, [True] * 7 + [False] + [True] * 2, ["hierarchical"] * 8 + ["uncommitted"] * 2), None),
])
def test_regime_rule(rows, expected):
    assert regime(rows) == expected


def test_regime_thresholds_are_parameters():
    rows = seeds(10, True, ["hierarchical"] * 7 + ["linear"] * 3, seen=0.9, unseen=0.9)
    assert regime(rows) == "unstable"
    assert regime(rows, Settings(regime_share=0.7)) == "hierarchical"


def test_bootstrap_intervals_hold_the_shares_and_are_reproducible():
    commitments = pd.Series(["hierarchical"] * 6 + ["linear"] * 4)
    values = np.r_[np.ones(6), np.zeros(4)]
    out = bootstrap_intervals(commitments, values, "end_test_aux")
    assert out == bootstrap_intervals(commitments, values, "end_test_aux")
    assert out["p_hierarchical_lo"] < 0.6 < out["p_hierarchical_hi"] and 0.2 < out["p_hierarchical_lo"]
    assert out["p_uncommitted_lo"] == out["p_uncommitted_hi"] == 0
    assert out["mean_end_test_aux_lo"] == out["p_hierarchical_lo"]  # the end value is 1 exactly when hierarchical
    # Every seed alike: no uncertainty left; no rule shares: no interval of them.
    assert bootstrap_intervals(pd.Series(["linear"] * 5), np.zeros(5), "e")["p_linear_lo"] == 1
    unknown = bootstrap_intervals(pd.Series([None] * 3), np.full(3, np.nan), "e")
    assert all(np.isnan(v) for v in unknown.values())


def test_comparisons_test_each_pair_with_its_rank_biserial_correlation():
    runs = pd.DataFrame({"condition": ["a"] * 5 + ["b"] * 5 + ["c"] * 4,
                         "end_test_aux": [0.1, 0.2, 0.3, 0.15, 0.05, 0.9, 0.8, 0.95, 0.7, 0.25, 0.1, 0.2, 0.3, 0.15]})
    out = comparisons_frame(runs)
    assert out[["condition_a", "condition_b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]
    ab = out.iloc[0]
    # a's 0.3 is above b's 0.25 once; the other 24 pairs favour b: U = 1, r = 2 * 1/25 - 1.
    assert ab["U"] == 1 and ab["rank_biserial"] == pytest.approx(-0.92)
    assert ab["p"] == pytest.approx(mannwhitneyu(runs["end_test_aux"][:5], runs["end_test_aux"][5:10]).pvalue)
    assert ab["median_end_test_aux_a"] == 0.15 and ab["n_b"] == 5
    assert comparison_sentence(ab).startswith("a differs from b, p = 0.016")  # exact: 2 x 2/252
    assert "does not detectably differ" in comparison_sentence(out.iloc[1])
    assert comparisons_frame(runs[runs["condition"] == "a"]).empty


def ti_condition(root, lr: float, kind: str, n_seeds: int = 5) -> list[str]:
    """Run directories of a TI condition whose seeds all follow `kind` over 60 evaluations."""
    steps = np.arange(60) * 2000
    rng = np.random.default_rng(int(lr * 1e5))
    paths = []
    for seed in range(n_seeds):
        if kind == "unstable":  # swings between the two rules until the end
            subject = np.where((np.arange(60) // 7 + seed) % 2 == 0, 0.97, 0.02)
        else:
            learned = 1 / (1 + np.exp(-(np.arange(60) - 15 - seed)))
            subject = learned if kind == "hierarchical" else 0.02 * (1 - learned)
        recent = 1 - subject - 0.01
        events = [{"test_aux": s, "test_agree_subject": s, "test_agree_recent": r, "iteration": int(step)}
                  for s, r, step in zip(subject + rng.normal(0, 1e-4, 60), recent, steps)]
        args = {**ARGS, "dataset": "tense", "lr": lr, "seed": seed, "data_dir": str(root / "no_data")}
        paths.append(write_run(root / f"lr{lr}_seed{seed}", args, events))
    return paths


def test_ti_conditions_built_to_each_regime_are_told_apart(tmp_path):
    """TI's agree-subject answer is the hierarchical rule, agree-recent the linear one."""
    paths = [*ti_condition(tmp_path, 1e-4, "hierarchical"), *ti_condition(tmp_path, 3e-4, "linear"),
             *ti_condition(tmp_path, 1e-3, "unstable")]
    runs, conditions, _ = dynamics(find_runs(paths))
    assert conditions["condition"].tolist() == ["lr=0.0001", "lr=0.0003", "lr=0.001"]
    assert conditions["regime"].tolist() == ["hierarchical", "linear", "unstable"]
    assert conditions["p_hierarchical"].tolist() == [1.0, 0.0, 0.0]
    assert conditions["p_linear"].tolist() == [0.0, 1.0, 0.0] and conditions["p_uncommitted"].iloc[2] == 1.0
    unstable = runs[runs["condition"] == "lr=0.001"]
    assert (unstable["oscillations"] >= 7).all() and not unstable["stable"].any()
    assert runs["end_seen_acc"].isna().all()  # no data folder: the seen/unseen split is left empty
    assert conditions["p_hierarchical_lo"].tolist() == [1.0, 0.0, 0.0]
