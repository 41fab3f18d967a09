"""`python -m analysis heads`: a hand-built LM whose heads copy the main and the first auxiliary is read
right (attention, ablation, greedy top heads), masses sum to 1, an unused head changes nothing,
participation ratios of known covariances, the command end to end on tiny QF and TI runs and on the
research checkpoint, and bad input refused in one line."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import heads
from analysis.__main__ import main as analysis
from data_utils.lines import read_text_lines
from data_utils.load import task_vocabulary
from helpers import (AUXILIARIES, QF, QF_TEST, REFERENCE, REFERENCE_CHECKPOINT, assert_one_line, assert_opens,
                     eval_events,
                     model_flags, parse_qf, parse_ti, read_csv, tiny_model, train, write_files)
from models.base import MAX_LEN
from models.transformer_lm import TransformerLM

needs_reference = pytest.mark.skipif(not REFERENCE_CHECKPOINT.exists(),
                                     reason=f"reference material not found at {REFERENCE}")
QF_VOCAB, TI_VOCAB = task_vocabulary("question"), task_vocabulary("tense")
TI_TEST = "the newt near the yaks swam . PRESENT\tthe newt near the yaks swims ."
"""A TI generalization line: the subject noun is singular, the noun nearest before the verb plural."""


# ---- a hand-built LM: head 1 copies the main auxiliary, head 2 the first ----

D, D_HEAD = 16, 4
ONE, POS, AUX, COPY_MAIN, COPY_FIRST, WHICH = 0, 1, 2, 3, 7, 11  # residual dims (the last three: 4 each)


def copying_lm() -> TransformerLM:
    """One layer of four heads, weights set by hand. The positional table holds a constant (ONE) and
    the position / 16 (POS); an auxiliary's embedding marks it (AUX) and says which it is (WHICH).
    At every position head 1 attends to the latest auxiliary so far (on a generalization line's
    marker: the main one) and head 2 to the earliest (the first); each copies which auxiliary it
    is into its own dims. Head 3 attends and copies too, but the output projection drops its
    output; head 4 is zero. No feed-forward. The output map reads head 1's copy, and head 2's at
    half the weight: the model answers hierarchically, and without head 1 linearly."""
    model = TransformerLM(len(QF_VOCAB) + 2, D, n_heads=4, n_layers=1, d_ff=4, dropout=0.0).eval()
    layer = model.trafo["encoder"].layers[0]
    attention = layer.self_attn
    q, kv, merge = attention.data_to_q.weight, attention.data_to_kv.weight, attention.multi_head_merge.weight
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        layer.norm1.weight.fill_(1.0), layer.norm2.weight.fill_(1.0)
        model.pos.pe.zero_()
        model.pos.pe[0, :, ONE] = 1.0
        model.pos.pe[0, :, POS] = torch.arange(MAX_LEN) / 16
        for j, token in enumerate(QF_VOCAB.ids(AUXILIARIES)):
            model.input_embedding.weight[token, [AUX, WHICH + j]] = 1 / D ** 0.5  # the forward scales by √D
            model.output_map.weight[token, [COPY_MAIN + j, COPY_FIRST + j]] = torch.tensor([1.0, 0.5])
        # kv rows per head: D_HEAD key rows, then D_HEAD value rows
        for head, latest in ((0, 1.0), (1, -1.0)):
            q[head * D_HEAD, ONE] = 1.0
            # an auxiliary outscores every other word by 200; among them the latest (or earliest)
            # wins by 5 a position: a softmax of weight ~1 on it
            kv[2 * head * D_HEAD, [AUX, POS]] = torch.tensor([400.0, latest * 160.0])
        for head in (0, 1, 2):
            kv[(2 * head + 1) * D_HEAD + torch.arange(4), WHICH + torch.arange(4)] = 10.0
        for j in range(4):
            merge[COPY_MAIN + j, j] = merge[COPY_FIRST + j, D_HEAD + j] = 1.0
    return model


@pytest.fixture(scope="module")
def qf_lines(data_dir) -> list:
    """200 lines of the generated QF test split (all generalization lines)."""
    path = os.path.join(data_dir, "question_formation_data", "question.test")
    return heads.generalization_lines([parse_qf(line) for line in read_text_lines(path)[:200]], 200)


def tables_of(model, examples, task="question", vocab=QF_VOCAB, ablation="mean", top_k=2) -> dict[str, pd.DataFrame]:
    lines = heads.encode_lines(examples, vocab, task)
    return {name: table.set_index(["layer", "head"]) if "head" in table else table
            for name, table in heads.checkpoint_tables(model, lines, ablation, top_k, batch_size=64).items()}


def test_the_heads_that_copy_the_main_and_the_first_auxiliary_are_found(qf_lines):
    tables = tables_of(copying_lm(), qf_lines)
    masses = tables["heads"]
    assert masses["mass_main"].idxmax() == (1, 1) and masses.loc[(1, 1), "mass_main"] > 0.99
    assert masses["mass_first"].idxmax() == (1, 2) and masses.loc[(1, 2), "mass_first"] > 0.99
    assert (masses["n_lines"] == 200).all()


def test_ablating_the_main_auxiliary_head_moves_the_answers_from_hierarchical_to_linear(qf_lines):
    ablation = tables_of(copying_lm(), qf_lines)["heads_ablation"]
    assert ablation.loc[(-1, -1)].tolist() == [1.0, 1.0, 0.0, 0.0]  # accuracy, hierarchical, linear, other
    without_main = ablation.loc[(1, 1)]
    assert without_main["hierarchical"] < 0.2 and without_main["linear"] > 0.6
    assert without_main["accuracy"] == without_main["hierarchical"]  # on these lines the gold is the main auxiliary
    # The first auxiliary's head only breaks ties the main one does not leave; heads 3 and 4 are never read.
    for head in (2, 3, 4):
        assert ablation.loc[(1, head)].tolist() == ablation.loc[(-1, -1)].tolist()
    zero = tables_of(copying_lm(), qf_lines, ablation="zero")["heads_ablation"]
    assert zero.loc[(1, 1), "linear"] == 1.0  # no main auxiliary left: the first one's copy decides


def test_the_greedy_top_heads_start_with_the_one_the_decision_needs(qf_lines):
    top = tables_of(copying_lm(), qf_lines)["heads_top"].reset_index()
    ablation = tables_of(copying_lm(), qf_lines)["heads_ablation"]
    assert top[["rank", "layer", "head"]].values.tolist()[0] == [1, 1, 1]
    assert top["moved"][0] == pytest.approx(1.0 - ablation.loc[(1, 1), "hierarchical"])
    # heads 3 and 4 add nothing to head 1, so the second step moves at least as much as the first
    assert top["moved"][1] >= top["moved"][0] and top[["layer", "head"]].values.tolist()[1] != [1, 1]


# ---- properties of any model ----

@pytest.mark.parametrize("task, vocab, line", [("question", QF_VOCAB, parse_qf(QF_TEST[0])),
                                               ("tense", TI_VOCAB, parse_ti(TI_TEST))])
def test_attention_masses_sum_to_one_per_head(task, vocab, line):
    model = tiny_model(n_words=len(vocab), vec_dim=16, n_heads=4, encoder_n_layers=2)
    masses = tables_of(model, [line] * 3, task, vocab, top_k=1)["heads"]
    assert len(masses) == 2 * 4 and (masses["n_lines"] == 3).all()
    np.testing.assert_allclose(masses[["mass_main", "mass_first", "mass_other"]].sum(axis=1), 1.0, atol=1e-5)
    assert (masses[["mass_main", "mass_first"]] > 0).all().all()


def test_cue_positions_and_decision_of_qf_and_ti_lines():
    # QF: [SOS] my raven that doesn't sleep does change . quest; the marker (9) decides.
    qf = heads.encode_lines([parse_qf(QF_TEST[0])], QF_VOCAB, "question")
    assert qf.last.tolist() == [9]
    assert qf.main[0].nonzero().flatten().tolist() == [6] and qf.first[0].nonzero().flatten().tolist() == [4]
    assert [qf.gold.item(), qf.hierarchical.item(), qf.linear.item()] == QF_VOCAB.ids(["does", "does", "doesn't"])
    # TI: [SOS] the newt near the yaks swam . PRESENT the newt near the yaks; "yaks" (13) decides the verb.
    ti = heads.encode_lines([parse_ti(TI_TEST)], TI_VOCAB, "tense")
    assert ti.last.tolist() == [13] and ti.tokens.shape[1] == 14
    assert ti.main[0].nonzero().flatten().tolist() == [2, 10]    # newt, in the input and in the output
    assert ti.first[0].nonzero().flatten().tolist() == [5, 13]   # yaks
    assert TI_VOCAB.ids(["swims", "swim"]) == [ti.hierarchical.item(), ti.linear.item()]
    assert ti.candidates.all()  # TI's argmax is over the whole vocabulary


def test_the_ablated_pass_continued_from_any_layer_gives_the_model_its_own_logits(qf_lines):
    model = tiny_model(n_words=len(QF_VOCAB), vec_dim=16, n_heads=4, encoder_n_layers=3)
    lines = heads.encode_lines(qf_lines[:20], QF_VOCAB, "question")
    with torch.inference_mode():
        record, logits = heads.clean_pass(model, lines)
        for start in range(3):
            torch.testing.assert_close(heads.decide_from(model, record.hidden_states[start], lines, start), logits)


def test_a_head_whose_output_is_never_read_changes_nothing_when_ablated(qf_lines):
    model = tiny_model(n_words=len(QF_VOCAB), vec_dim=16, n_heads=4, encoder_n_layers=2)
    with torch.no_grad():
        model.trafo["encoder"].layers[0].self_attn.multi_head_merge.weight[:, 4:8] = 0.0  # layer 1, head 2
    ablation = tables_of(model, qf_lines[:50])["heads_ablation"]
    assert ablation.loc[(1, 2)].tolist() == ablation.loc[(-1, -1)].tolist()
    assert (ablation.drop(index=[(-1, -1), (1, 2)]) != ablation.loc[(-1, -1)]).any(axis=1).any()


def test_participation_ratio_of_known_covariances():
    d = 6
    isotropic = np.concatenate([np.eye(d), -np.eye(d)]) * 3.0  # covariance ∝ identity
    assert heads.covariance_pr(isotropic) == pytest.approx(d)
    rank_one = np.arange(10.0)[:, None] * np.array([1.0, -2.0, 0.5])
    assert heads.covariance_pr(rank_one) == pytest.approx(1.0)
    two_scales = np.array([[3.0, 0], [-3, 0], [0, 1], [0, -1]])  # eigenvalues ∝ 9, 1
    assert heads.covariance_pr(two_scales) == pytest.approx(100 / 82)
    # class sizes weigh the class means: 3 copies of a row weigh as one row of weight 3
    means, sizes = np.array([[1.0, 0], [0, 1], [0, 0]]), np.array([3, 1, 2])
    assert heads.covariance_pr(means, sizes) == pytest.approx(heads.covariance_pr(np.repeat(means, sizes, axis=0)))
    assert np.isnan(heads.covariance_pr(np.ones((4, 3))))  # no variance: no dimension to count


def test_subspace_rows_count_the_dimensions_of_the_states_and_of_the_class_means():
    rng = np.random.default_rng(0)
    classes = np.repeat([0, 1], 200)
    states = np.stack([rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) * 0.01])
    states[1, :, 0] += classes * 5.0  # layer 1: two classes far apart along one direction
    rows = heads.subspace_rows(states, classes)
    assert rows["layer"].tolist() == [0, 1]
    assert rows["pr_states"][0] > 7 and rows["pr_states"][1] == pytest.approx(1.0, abs=0.01)
    assert rows["pr_between"][1] == pytest.approx(1.0)  # two class means span one direction


# ---- the command ----

@pytest.fixture(scope="module")
def small_data(data_dir, tmp_path_factory) -> str:
    """The first lines of every generated QF and TI file: 300 training lines, 60 of every other split."""
    out = tmp_path_factory.mktemp("heads_data")
    for folder in ("question_formation_data", "tense_inflection_data"):
        write_files(out / folder, {name: read_text_lines(os.path.join(data_dir, folder, name))[:300 if "train" in name else 60]
                                   for name in os.listdir(os.path.join(data_dir, folder))})
    return str(out)


def trained(data: str, out, *flags: str) -> str:
    """A tiny run evaluated on val and test, saved at its evaluations."""
    assert train(data, "--callback", "--lr", "3e-3", "--num_warmup_steps", "2", "--eval_keys", "val,test", *flags,
                 "--save_dir", str(out), "--save_prefix", "r") == 0
    return os.path.join(out, "r")


@pytest.fixture(scope="module")
def qf_run(small_data, tmp_path_factory) -> str:
    """A two-layer QF LM of two heads, saved at steps 0, 3 and 6."""
    return trained(small_data, tmp_path_factory.mktemp("heads_qf"), *model_flags(2, 32, 2), "--dataset", "question",
                   "--max_train_steps", "6", "--eval_every", "3", "--save_every", "3")


@pytest.fixture(scope="module")
def ti_run(small_data, tmp_path_factory) -> str:
    """A one-layer TI LM of two heads, saved at steps 0 and 2."""
    return trained(small_data, tmp_path_factory.mktemp("heads_ti"), *model_flags(1, 16, 2), "--dataset", "tense",
                   "--max_train_steps", "2", "--eval_every", "2", "--save_every", "2")


def check_outputs(out, steps: list[int], layers: int, n_heads: int, top_k: int) -> dict[str, pd.DataFrame]:
    tables = {name: read_csv(out / f"{name}.csv") for name in ("heads", "heads_ablation", "heads_top", "heads_subspace")}
    assert list(tables["heads"].columns) == heads.COLUMNS
    assert list(tables["heads_ablation"].columns) == heads.ABLATION_COLUMNS
    assert list(tables["heads_top"].columns) == heads.TOP_COLUMNS
    assert list(tables["heads_subspace"].columns) == heads.SUBSPACE_COLUMNS
    assert len(tables["heads"]) == len(steps) * layers * n_heads
    assert len(tables["heads_ablation"]) == len(steps) * (1 + layers * n_heads)
    assert len(tables["heads_top"]) == len(steps) * top_k
    assert tables["heads_subspace"]["layer"].tolist() == list(range(layers + 1)) * len(steps)
    for table in tables.values():
        assert sorted(set(table["step"])) == steps
    assert sorted(set(tables["heads"]["layer"])) == list(range(1, layers + 1))
    assert sorted(set(tables["heads"]["head"])) == list(range(1, n_heads + 1))
    np.testing.assert_allclose(tables["heads"][["mass_main", "mass_first", "mass_other"]].sum(axis=1), 1.0, atol=1e-5)
    shares = tables["heads_ablation"][["hierarchical", "linear", "other"]]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=1e-9)
    figures = ["heads.png", "heads_ablation.png", "heads_subspace.png"]
    assert sorted(os.listdir(out)) == sorted([f"{name}.csv" for name in tables] + figures)
    for name in figures:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return tables


def unablated(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return tables["heads_ablation"][tables["heads_ablation"]["layer"] == -1].set_index("step")


def assert_unablated_is_the_evaluation(tables: dict[str, pd.DataFrame], run: str, hierarchical: str,
                                       linear: str) -> None:
    """On every generalization line of the test split, the unablated model's shares are those the
    training evaluation logged (its rule metrics `hierarchical` and `linear`)."""
    for step, event in eval_events(run).items():
        row = unablated(tables).loc[step]
        assert [row["hierarchical"], row["linear"], row["other"]] == pytest.approx(
            [event[f"test_{hierarchical}"], event[f"test_{linear}"], event["test_other"]])
        assert row["accuracy"] == row["hierarchical"]  # the gold answer is the hierarchical one


def test_heads_end_to_end_on_a_tiny_qf_run(qf_run, small_data, tmp_path, capsys):
    out = tmp_path / "analysis"
    assert analysis(["heads", qf_run, "--data_dir", small_data, "--sentences", "100", "--top_k", "2", "--out", str(out),
                     "--device", "cpu"]) == 0
    tables = check_outputs(out, [0, 3, 6], 2, 2, 2)
    assert (tables["heads"]["n_lines"] == 60).all()  # every test line: there are 60
    assert_unablated_is_the_evaluation(tables, qf_run, "hierarchical", "linear")
    printed = capsys.readouterr().out
    assert "step 6, 60 lines" in printed and "leans most to the main auxiliary" in printed
    assert "wrote heads.csv" in printed


def test_heads_end_to_end_on_a_tiny_ti_run(ti_run, small_data, tmp_path, capsys):
    out = tmp_path / "analysis"
    assert analysis(["heads", ti_run, "--data_dir", small_data, "--top_k", "1", "--ablation", "zero",
                     "--out", str(out), "--device", "cpu"]) == 0
    tables = check_outputs(out, [0, 2], 1, 2, 1)
    assert_unablated_is_the_evaluation(tables, ti_run, "agree_subject", "agree_recent")
    assert "leans most to the subject noun" in capsys.readouterr().out


def test_heads_writes_its_figures_in_the_format_asked(ti_run, small_data, tmp_path):
    out = tmp_path / "analysis"
    assert analysis(["heads", ti_run, "--data_dir", small_data, "--sentences", "20", "--top_k", "1", "--format", "pdf",
                     "--out", str(out), "--device", "cpu"]) == 0
    for figure in ("heads", "heads_ablation", "heads_subspace"):
        assert_opens(out / f"{figure}.pdf")


@needs_reference
def test_heads_on_the_research_checkpoint(small_data, tmp_path):
    run = tmp_path / "research"
    run.mkdir()
    shutil.copy(REFERENCE_CHECKPOINT, run / "checkpoint_1000.pth")
    shutil.copy(REFERENCE / "tiny_qf_args.json", run / "args.json")
    assert analysis(["heads", str(run), "--data_dir", small_data, "--sentences", "40", "--device", "cpu"]) == 0
    tables = check_outputs(run / "analysis", [1000], 2, 4, 3)
    clean = unablated(tables).loc[1000]
    # Its test_aux is 0.07 on the whole generalization set: it answers by the linear rule.
    assert clean["linear"] > 0.5 and clean["accuracy"] == clean["hierarchical"]


def edited_run(run: str, tmp_path, **args) -> str:
    """A copy of `run` whose args.json has `args` changed."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    saved = json.loads((copy / "args.json").read_text())
    (copy / "args.json").write_text(json.dumps({**saved, **args}))
    return str(copy)


@pytest.mark.parametrize("flags, fragments", [
    (["--top_k", "5"], ["--top_k 5 but the model has 4 heads"]),
    (["--sentences", "0"], ["--sentences must be at least 1"]),
    (["--ablation", "half"], ["invalid choice: 'half'"]),
])
def test_bad_flags_are_refused_in_one_line_before_anything_is_written(qf_run, tmp_path, capsys, flags, fragments):
    run = edited_run(qf_run, tmp_path)
    assert analysis(["heads", run, *flags]) == 2
    assert_one_line(capsys.readouterr().err, "error: ", *fragments)
    assert not os.path.exists(os.path.join(run, "analysis"))


def test_a_model_that_is_not_a_causal_lm_is_refused(qf_run, tmp_path, capsys):
    run = edited_run(qf_run, tmp_path, not_lm=True)
    assert analysis(["heads", run]) == 2
    assert_one_line(capsys.readouterr().err, "error: ", "heads reads a causal language model's attention",
                    "enc_dec")
    assert not os.path.exists(os.path.join(run, "analysis"))


def test_a_test_split_without_generalization_lines_is_refused(qf_run, tmp_path, capsys):
    data = tmp_path / "data"
    write_files(data / "question_formation_data", {"question.test": [QF[4]]})  # its auxiliaries agree
    run = edited_run(qf_run, tmp_path)
    assert analysis(["heads", run, "--data_dir", str(data)]) == 2
    assert_one_line(capsys.readouterr().err, "error: ", "its test split has no generalization line")
    assert not os.path.exists(os.path.join(run, "analysis"))
