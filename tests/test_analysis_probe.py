"""`python -m analysis probe`: probes find what states carry, labels follow the grammar, the command
runs end to end on our runs and on the research code's, and bad input is refused."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from analysis import probe
from analysis.__main__ import main as analysis
from data_utils.lines import read_text_lines
from data_utils.load import task_vocabulary
from helpers import (QF, QF_TEST, REFERENCE, REFERENCE_CHECKPOINT, TI, assert_one_line, model_flags, parse_qf,
                     parse_ti, read_csv, tiny_model, train, write_files)
from layers import Internals
from util import HierGenError

LABELS = ["pos", "aux_role", "main_aux", "first_aux"]
needs_reference = pytest.mark.skipif(not REFERENCE_CHECKPOINT.exists(),
                                     reason=f"reference material not found at {REFERENCE}")


# ---- probing states built to carry a label ----

def built_states(n_layers: int, carrier: int, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """[layers, points, 16] of noise, plus in layer `carrier` a one-hot of the label."""
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(n_layers, len(y), 16))
    states[carrier, np.arange(len(y)), np.unique(y, return_inverse=True)[1]] += 3.0
    return states


def sentence_labels(y: np.ndarray, seed: int = 0) -> probe.Labels:
    """One point per sentence, cross-validated by sentence."""
    rng = np.random.default_rng(seed)
    return probe._by_sentence("built", np.arange(len(y)), np.ones(len(y), int), y, rng)


def test_a_probe_finds_the_label_in_the_one_layer_built_to_carry_it():
    y = np.random.default_rng(1).choice(["a", "b", "c"], size=600, p=[0.5, 0.3, 0.2])
    table = probe.probe_layers(built_states(4, 2, y), sentence_labels(y))
    assert list(table["layer"]) == [0, 1, 2, 3] and set(table["label"]) == {"built"}
    assert (table["n_test"] == 600).all() and (table["n_train"] == 480).all()
    majority = table["majority_acc"].iloc[0]
    assert majority == pytest.approx(np.mean(y == "a"), abs=0.03)
    by_layer = table.set_index("layer")
    assert by_layer.loc[2, "test_acc"] > 0.95
    for layer in (0, 1, 3):
        assert abs(by_layer.loc[layer, "test_acc"] - majority) < 0.08, by_layer
    # The control task (labels shuffled across sentences) is not in the states, even at layer 2.
    assert (table["control_acc"] < majority + 0.08).all()


def test_majority_and_held_out_points_with_a_fixed_training_set():
    y = np.array(["a"] * 6 + ["b"] * 4)
    fold = np.array([-1] * 5 + [0] * 5)  # trained on the first five (all "a"), tested on the rest
    labels = probe.Labels("fixed", np.arange(10), np.ones(10, int), y, y, fold)
    row = probe.probe_layers(built_states(1, 0, y), labels).iloc[0]
    assert (row["n_train"], row["n_test"]) == (5, 5)
    assert row["majority_acc"] == pytest.approx(0.2) and row["test_acc"] == pytest.approx(0.2)


# ---- labels from the grammar ----

DECLS = [parse_qf(QF[2]), parse_qf(QF[4]), parse_qf(QF[0])]  # SRC subject, ORC object, one auxiliary
GENERAL = [parse_qf(QF_TEST[0])]


def test_pos_tags_and_positions_of_hand_made_sentences():
    labels = probe.pos_labels(DECLS, np.random.default_rng(0))
    first = labels.sentence == 0  # my yak who doesn't eat does move .
    assert list(labels.y[first]) == ["det", "n_s", "rel", "aux_s", "v_intrans", "aux_s", "v_intrans"]
    assert list(labels.position[first]) == [1, 2, 3, 4, 5, 6, 7]  # SOS is position 0; '.' has no tag
    second = labels.sentence == 1  # her raven does comfort the zebras who don't sleep .
    assert list(labels.y[second]) == ["det", "n_s", "aux_s", "v_trans", "det", "n_p", "rel", "aux_p", "v_intrans"]


def test_pos_holds_out_whole_word_types_and_its_control_shuffles_tags_by_type():
    words = np.array([w for e in DECLS for w in e.input[:-1]])
    labels = probe.pos_labels(DECLS, np.random.default_rng(0))
    tested = set(words[labels.fold == 0])
    assert tested and not tested & set(words[labels.fold == -1])  # no type in both sets
    for tag in set(labels.y):  # every tag with two or more types keeps one to train on
        if len(set(words[labels.y == tag])) >= 2:
            assert set(words[(labels.y == tag) & (labels.fold == -1)])
    for word in set(words):
        assert len(set(labels.control[words == word])) == 1  # one control tag per word type


def test_tense_pos_tags_are_its_past_tags():
    labels = probe.pos_labels([parse_ti(TI[7])], np.random.default_rng(0))
    assert list(labels.y) == ["det", "n_s", "rel", "det", "n_p", "v_past_trans", "v_past_trans", "det", "n_s"]


def test_aux_roles_of_hand_made_sentences():
    labels = probe.aux_role_labels(DECLS, np.random.default_rng(0))
    # Only the sentences with two auxiliaries: doesn't (embedded) does (main); does (main) don't (embedded).
    assert list(labels.sentence) == [0, 0, 1, 1]
    assert list(labels.position) == [4, 6, 3, 8]
    assert list(labels.y) == ["embedded", "main", "main", "embedded"]
    assert labels.fold[0] == labels.fold[1] and labels.fold[2] == labels.fold[3]  # folds by sentence


def test_main_and_first_auxiliary_at_the_marker_of_a_generalization_line():
    # my raven that doesn't sleep does change . quest: first auxiliary doesn't, main does.
    main = probe.marker_labels("main_aux", GENERAL, 3, np.random.default_rng(0))
    first = probe.marker_labels("first_aux", GENERAL, 3, np.random.default_rng(0))
    assert list(main.y) == ["does"] and list(first.y) == ["doesn't"]
    assert list(main.sentence) == [3] and list(main.position) == [9]  # SOS + 7 words + '.' before it


def test_sentences_are_distinct_declaratives_and_generalization_lines():
    train = [parse_qf(line) for line in QF]
    test = [parse_qf(QF[4]), parse_qf(QF_TEST[0])]  # a question whose auxiliaries agree is no generalization line
    declaratives, general = probe.choose_sentences(train, test, 100)
    assert len(declaratives) == len({e.input for e in train}) == 7
    assert general == [parse_qf(QF_TEST[0])]


def test_a_labels_held_out_points_and_control_do_not_depend_on_the_other_labels_asked_for():
    declaratives, general = DECLS * 4, GENERAL * 10
    alone = probe.make_labels(["first_aux"], declaratives, general)[0]
    among_all = probe.make_labels(LABELS, declaratives, general)[3]
    for field in ("sentence", "position", "y", "control", "fold"):
        np.testing.assert_array_equal(getattr(alone, field), getattr(among_all, field))


def test_aux_role_needs_a_declarative_with_two_auxiliaries():
    with pytest.raises(HierGenError, match="no sampled declarative has two auxiliaries"):
        probe.aux_role_labels([parse_qf(QF[0])], np.random.default_rng(0))


def test_states_at_are_the_recorded_states_of_each_sentence_alone():
    vocab = task_vocabulary("question")
    model = tiny_model(n_words=len(vocab))
    sentences = DECLS + GENERAL
    sentence, position = np.array([0, 1, 3, 3]), np.array([7, 2, 1, 9])
    states = probe.states_at(model, vocab, sentences, sentence, position, "cpu", batch_size=2)
    assert states.shape == (3, 4, 32)
    for point, (i, k) in enumerate(zip(sentence, position)):
        record = Internals()
        with torch.no_grad():
            tokens = [vocab.sos, *vocab.ids(sentences[i].input + (sentences[i].marker,))]
            model(torch.tensor([tokens]), internals=record)
        alone = torch.stack(record.hidden_states)[:, 0, k].numpy()
        np.testing.assert_allclose(states[:, point], alone, atol=1e-5)


# ---- the command ----

@pytest.fixture(scope="module")
def small_data(data_dir, tmp_path_factory) -> str:
    """The first lines of the generated QF splits: enough to probe, quick to load."""
    out = tmp_path_factory.mktemp("probe_data")
    source = os.path.join(data_dir, "question_formation_data")
    write_files(out / "question_formation_data", {name: read_text_lines(os.path.join(source, name))[:400]
                                                  for name in ("question.train", "question.val", "question.test")})
    return str(out)


@pytest.fixture(scope="module")
def tiny_run(small_data, tmp_path_factory) -> str:
    """A two-layer QF run with checkpoints at steps 0, 3 and 6."""
    out = tmp_path_factory.mktemp("probe_run")
    assert train(small_data, *model_flags(2, 32, 2), "--dataset", "question", "--callback", "--max_train_steps", "6",
                 "--eval_every", "3", "--save_every", "3", "--eval_keys", "val", "--save_dir", str(out),
                 "--save_prefix", "r") == 0
    return str(out / "r")


def check_outputs(out, steps: list[int], layers: int, labels: list[str]) -> None:
    table = read_csv(out / "probe.csv")
    assert list(table.columns) == probe.COLUMNS
    assert len(table) == len(steps) * (layers + 1) * len(labels)
    assert sorted(set(table["step"])) == steps and sorted(set(table["layer"])) == list(range(layers + 1))
    assert list(dict.fromkeys(table["label"])) == labels
    for column in ("train_acc", "test_acc", "control_acc", "majority_acc"):
        assert table[column].between(0, 1).all()
    assert sorted(os.listdir(out)) == sorted(["probe.csv", *(f"probe_{name}.png" for name in labels)])
    for name in labels:
        assert (out / f"probe_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_end_to_end_on_a_tiny_run(tiny_run, small_data, tmp_path, capsys):
    out = tmp_path / "analysis"
    assert analysis(["probe", tiny_run, "--data_dir", small_data, "--sentences", "40", "--out", str(out),
                     "--device", "cpu"]) == 0
    check_outputs(out, [0, 3, 6], 2, LABELS)
    printed = capsys.readouterr().out
    assert "test acc, step 6" in printed and "majority" in printed and "wrote probe.csv" in printed


@needs_reference
def test_probe_on_the_research_checkpoint(small_data, tmp_path, capsys):
    run = tmp_path / "research"
    run.mkdir()
    shutil.copy(REFERENCE_CHECKPOINT, run / "checkpoint_1000.pth")
    shutil.copy(REFERENCE / "tiny_qf_args.json", run / "args.json")
    assert analysis(["probe", str(run), "--data_dir", small_data, "--sentences", "40", "--device", "cpu",
                     "--labels", "pos,first_aux"]) == 0
    check_outputs(run / "analysis", [1000], 2, ["pos", "first_aux"])


@pytest.mark.parametrize("labels, task, fragments", [
    ("pos,tense", "question", ["unknown label 'tense'", "known: pos, aux_role, main_aux, first_aux"]),
    ("pos,aux_role", "tense", ["label 'aux_role' does not exist for the tense task", "its labels: pos"]),
    ("main_aux", "tense", ["label 'main_aux' does not exist for the tense task"]),
])
def test_labels_a_task_does_not_have_are_refused_before_anything_is_written(tiny_run, tmp_path, capsys, labels,
                                                                             task, fragments):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    args = json.loads((run / "args.json").read_text())
    (run / "args.json").write_text(json.dumps({**args, "dataset": task}))
    assert analysis(["probe", str(run), "--labels", labels]) == 2
    assert_one_line(capsys.readouterr().err, "error: ", *fragments)
    assert not (run / "analysis").exists()
