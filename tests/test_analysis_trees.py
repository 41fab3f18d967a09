"""`python -m analysis trees`: span similarities through the real masked forward pass, induced trees,
their scores, the grammar's gold trees, and the command end to end."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from analysis import trees
from analysis.__main__ import main as analysis
from data_utils import question, tense
from data_utils.config import DataConfig
from data_utils.lines import read_text_lines
from helpers import (REFERENCE, REFERENCE_CHECKPOINT, assert_one_line, model_flags, read_csv, tiny_model, train,
                     write_files)

COLUMNS = ["step", "n_sentences", "t_score", "t_parseval", "right_branching_f1"]
SOS = 12


def random_sentences(lengths: list[int], seed: int = 0) -> list[list[int]]:
    """Word ids (1..10) of sentences of the given lengths; ids 11 and SOS = 12 are EOS and SOS."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 11, n).tolist() for n in lengths]


def test_the_lm_attention_mask_restricts_every_layer():
    model = tiny_model(n_words=11)
    inputs = torch.tensor([[SOS, 3, 4, 5, 6, 7]])
    plain = model(inputs)
    assert torch.equal(model(inputs, attn_mask=torch.ones(6, 6, dtype=torch.bool)), plain)
    hide_word_2 = (torch.arange(6) != 2)[None, None, None, :]  # no position may attend to token 2
    changed = inputs.clone()
    changed[0, 2] = 9
    masked, masked_changed = model(inputs, attn_mask=hide_word_2), model(changed, attn_mask=hide_word_2)
    assert not torch.allclose(masked[0, 3:], plain[0, 3:], atol=1e-4)  # it did hide something
    assert torch.allclose(masked[0, 3:], masked_changed[0, 3:], atol=1e-6)  # ... at every layer
    assert torch.allclose(masked[0, :2], plain[0, :2], atol=1e-6)  # earlier positions never saw it


def test_one_masked_pass_per_start_equals_one_pass_per_span():
    model = tiny_model(n_words=11)
    sentences = random_sentences([5, 7, 5, 3, 9, 7])
    fast = trees.similarity_charts(model, sentences, SOS)
    one_at_a_time = trees.similarity_charts(model, sentences, SOS, batch_tokens=1)
    for words, chart, alone in zip(sentences, fast, one_at_a_time):
        naive = trees.naive_similarity_chart(model, words, SOS)
        upper = np.triu(np.ones_like(naive, dtype=bool))
        assert np.abs(chart - naive)[upper].max() < 1e-5
        assert np.abs(alone - chart).max() < 1e-5
        # a span from the first word sees the same context in both passes
        assert np.abs(chart[0] - 1).max() < 1e-5
        assert chart[upper].min() < 0.999  # ... and the others do not


def test_a_hand_made_chart_gives_its_tree_and_t_score():
    # Words (0 1) and (2 3) belong together: their spans keep their meaning out of context.
    s = np.array([[1.0, 0.9, 0.2, 0.1],
                  [0.0, 0.6, 0.3, 0.4],
                  [0.0, 0.0, 0.5, 0.8],
                  [0.0, 0.0, 0.0, 0.7]])
    tree = trees.induce_tree(s)
    assert tree == ((0, 1), (2, 3))
    assert trees.splits(tree) == [(0, 1, 3), (0, 0, 1), (2, 2, 3)]
    assert trees.brackets(tree) == {(0, 3), (0, 1), (2, 3)}
    # Induced root split: s(0,1) + s(2,3) = 1.7. Random root splits r = 0, 1, 2 give 1.0 + 0.4, 1.7,
    # 0.2 + 0.7; two-word nodes have one split and add 0.
    by_root_split = {0: 0.3, 1: 0.0, 2: 0.8}
    for seed in range(5):
        root_split = int(np.random.default_rng(seed).integers(0, 3))
        score = trees.tree_score(s, tree, np.random.default_rng(seed))
        assert score == pytest.approx(by_root_split[root_split])
    assert trees.induce_tree(np.ones((1, 1))) == 0 and trees.tree_score(np.ones((1, 1)), 0, None) == 0.0


def test_bracket_f1_is_micro_averaged():
    assert trees.right_branching(4) == (0, (1, (2, 3)))
    assert trees.brackets(trees.right_branching(4)) == {(0, 3), (1, 3), (2, 3)}
    predicted = [{(0, 3), (1, 3), (2, 3)}, {(0, 1)}]
    gold = [{(0, 3), (0, 1), (2, 3)}, {(0, 1)}]
    # 3 of 4 predicted brackets are gold, 3 of 4 gold brackets predicted
    assert trees.bracket_f1(predicted, gold) == pytest.approx(0.75)
    assert trees.bracket_f1([{(0, 1)}], [{(1, 2)}]) == 0.0


def spans(bracketed: str) -> set[tuple[int, int]]:
    """The brackets of a tree written "((the newt) (does swim))" as (first word, last word) spans."""
    out, opened, word = set(), [], 0
    for token in bracketed.replace("(", " ( ").replace(")", " ) ").split():
        if token == "(":
            opened.append(word)
        elif token == ")":
            out.add((opened.pop(), word - 1))
        else:
            word += 1
    return out


def words_of(bracketed: str) -> tuple[str, ...]:
    return tuple(bracketed.replace("(", " ").replace(")", " ").split())


GOLD_QF = [
    "((the newt) (does swim))",
    "((the newts) (don't (admire (the yak))))",
    "(((my yak) (who (doesn't eat))) (does move))",  # subject-extracted RC, intransitive
    "(((some quail) (who (does (applaud (your newts))))) (doesn't (admire ((my yaks) (that (don't giggle))))))",
    "(((my yaks) (that ((our newt) (does amuse)))) (don't read))",  # object-extracted RC
    "(((the zebra) (near (my newts))) (doesn't wait))",  # PP on the subject
    "((your peacocks) (do (accept ((her newt) (that ((the yaks) (do remember)))))))",  # ORC on the object
    "((her raven) (does (comfort ((the zebras) (by (our quail))))))",  # PP on the object
]
GOLD_TI = [
    "((the newt) swam)",
    "((the newts) (admired (the yak)))",
    "(((my yak) (near (the zebras))) ate)",  # PP
    "(((her ravens) (who slept)) read)",  # subject-extracted RC, intransitive
    "(((her ravens) (who (amused (the yak)))) read)",
    "(((some quail) (that ((our newt) amused))) waited)",  # object-extracted RC
    "(((your unicorn) (that ((our walruses) comforted))) (applauded (the yak)))",
    "((my zebras) (comforted ((the yak) (that ((her newts) admired)))))",
]


@pytest.mark.parametrize("task, sentences", [("question", GOLD_QF), ("tense", GOLD_TI)])
def test_gold_trees_follow_the_grammar(task, sentences):
    grammar = {"question": question.GRAMMAR, "tense": tense.GRAMMAR}[task]
    for bracketed in sentences:
        words = words_of(bracketed)
        assert grammar.parse(words)  # a sentence of the task's grammar
        assert trees.gold_brackets([words], task) == [spans(bracketed)], bracketed


def test_right_branching_f1_on_generated_qf_training_questions(data_dir):
    sentences = trees.training_sentences(DataConfig(dataset="question", data_dir=data_dir), 1000, 42)
    assert len(sentences) == 1000 and all(w[-1] != "." for w in sentences)
    gold = trees.gold_brackets(sentences, "question")
    right = [trees.brackets(trees.right_branching(len(words))) for words in sentences]
    assert trees.bracket_f1(right, gold) == pytest.approx(0.663, abs=0.01)


@pytest.fixture(scope="module")
def tiny_run(data_dir, tmp_path_factory) -> tuple[str, str]:
    """A 2-layer QF LM trained 6 steps on the first lines of the generated data; checkpoints 0, 3, 6.
    Returns (run directory, its data folder)."""
    data = tmp_path_factory.mktemp("tiny_data")
    source = os.path.join(data_dir, "question_formation_data")
    write_files(data / "question_formation_data", {
        name: read_text_lines(os.path.join(source, name))[:n]
        for name, n in [("question.train", 400), ("question.val", 50), ("question.test", 50),
                        ("question.test.type", 50)]})
    out = tmp_path_factory.mktemp("runs")
    assert train(str(data), *model_flags(2, 32, 2), "--dataset", "question", "--callback", "--lr", "3e-3",
                 "--max_train_steps", "6", "--eval_every", "3", "--save_every", "3", "--eval_keys", "val",
                 "--save_dir", str(out), "--save_prefix", "r") == 0
    return str(out / "r"), str(data)


def test_trees_runs_end_to_end_on_a_tiny_run(tiny_run, capsys):
    run, data = tiny_run
    assert analysis(["trees", run, "--sentences", "40", "--device", "cpu"]) == 0
    out = os.path.join(run, "analysis")
    assert sorted(os.listdir(out)) == ["trees.csv", "trees.png"]
    table = read_csv(os.path.join(out, "trees.csv"))
    assert list(table) == COLUMNS and table["step"].tolist() == [0, 3, 6]
    assert (table["n_sentences"] == 40).all() and table["right_branching_f1"].nunique() == 1
    assert table["t_parseval"].between(0, 1).all() and table["t_score"].notna().all()
    assert "t_parseval" in capsys.readouterr().out
    # the same sample and random splits: a rerun writes the same table
    assert analysis(["trees", run, "--sentences", "40", "--device", "cpu", "--data_dir", data]) == 0
    assert read_csv(os.path.join(out, "trees.csv")).equals(table)


@pytest.mark.skipif(not REFERENCE_CHECKPOINT.exists(), reason=f"reference material not found at {REFERENCE}")
def test_trees_reads_a_research_checkpoint(data_dir, tmp_path):
    shutil.copy(REFERENCE_CHECKPOINT, tmp_path / "checkpoint_1000.pth")
    shutil.copy(REFERENCE / "tiny_qf_args.json", tmp_path / "args.json")
    out = tmp_path / "out"
    assert analysis(["trees", str(tmp_path), "--sentences", "100", "--data_dir", data_dir,
                     "--device", "cpu", "--out", str(out)]) == 0
    row = read_csv(out / "trees.csv").iloc[0]
    assert row["step"] == 1000 and row["n_sentences"] == 100
    # A trained LM's trees beat random splits and match the gold trees better than chance would.
    assert row["t_score"] > 0 and row["t_parseval"] > 0.3


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    classifier = tmp_path / "classifier"
    assert train(data, *model_flags(1, 32, 2), "--dataset", "question", "--mode", "enc", "--max_train_steps", "1",
                 "--eval_every", "1", "--eval_keys", "val", "--save_every", "1", "--save_dir", str(tmp_path),
                 "--save_prefix", "classifier") == 0
    capsys.readouterr()
    cases = [([str(tmp_path / "none")], "not a run directory"),
             ([run, "--sentences", "0"], "--sentences must be at least 1"),
             ([run, "--seed", "-1"], "--seed must be between 0 and 4294967295"),
             ([str(classifier)], "trees needs a causal LM"),
             ([run, "--data_dir", str(tmp_path / "nowhere")], "missing data file")]
    for argv, message in cases:
        out = tmp_path / "out"
        assert analysis(["trees", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ")
        assert_one_line(err, message)
        assert not out.exists()
