"""Linear probes, layer x checkpoint: where in the model, and when in training, grammatical labels appear.

    python -m analysis probe RUN [--labels pos,aux_role,main_aux,first_aux] [--sentences 1000] [--out DIR]

For each checkpoint and each layer (0 = embeddings plus positions, 1..L = layer outputs) a fresh
probe is fitted and scored on held-out points: multinomial logistic regression, L2 with C = 1, on
standardized features. One forward pass per batch records every layer's states at the points of
every label, so a checkpoint's features are computed once for all labels.

Labels (QF has all four; TI only `pos`: it has no auxiliaries):
  pos        at each word of a declarative, its tag in the grammar (det, n_s, n_p, prep, rel, aux_s,
             aux_p, v_intrans, v_trans; TI: v_past_intrans, v_past_trans), tested on held-out word
             types: 20% of each tag's types (at least one, at most all but one), so the probe must
             generalize beyond word identity.
  aux_role   at each auxiliary of a declarative with two or more, main clause or embedded.
  main_aux   at the marker of a generalization line (where the first and the main auxiliary differ),
  first_aux  the main / the first auxiliary of the input (do, does, don't, doesn't).
aux_role, main_aux and first_aux are 5-fold cross-validated by sentence: every point is tested once,
by the probe trained on the other folds' sentences.

Sentences (seed 42): --sentences distinct declaratives drawn from the run's training split (its
filters applied) for pos and aux_role, and as many generalization lines drawn from its test split
for main_aux and first_aux. Default 1,000 each: about 9,000 pos points, 1,100 auxiliaries of
declaratives with two or more, 1,000 marker points.

Controls, in every row: majority_acc, the test accuracy of always answering the training points'
commonest label; control_acc, the test accuracy of the same probe trained and tested on a control
task whose labels are shuffled by word type (pos: each word type takes the tag of another type) or
by sentence (each sentence takes the labels of another sentence with as many points). A control
task keeps the labels' frequencies and little else (aux_role's keeps each sentence's pattern of
main and embedded, so an auxiliary's rank tells a little), and a probe reads much from the random
features of an untrained model: what a layer carries is its test_acc's margin over both.

Cost: 2 + 2 x 5 x 3 = 32 logistic regressions per checkpoint and layer, each on 1,000-7,000 points
of width d (lbfgs, at most MAX_ITER iterations, one thread). On a CPU the forward passes and the
fits take about equal shares (a GPU takes the forward passes; the README gives the paper
configuration's time per checkpoint); a checkpoint's features, [layers + 1, 12,600 points, d] in
float32, take 180 MB with the default 1,000 sentences.
"""
from __future__ import annotations

import argparse
import random
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import plot
from analysis.arguments import add_count, add_run, outputs
from analysis.checkpoint_series import CheckpointRun, each_checkpoint, open_run
from data_utils.example import Example
from data_utils.load import load_task
from data_utils.registry import get_dataset
from layers import Internals
from util import HierGenError
from vocabulary import WordVocabulary

LABELS = {"question": ("pos", "aux_role", "main_aux", "first_aux"), "tense": ("pos",)}
ALL_LABELS = LABELS["question"]
COLUMNS = ["step", "layer", "label", "n_train", "n_test", "train_acc", "test_acc", "control_acc", "majority_acc"]
SEED = 42
HELD_OUT_TYPES = 0.2  # pos: share of each tag's word types kept for testing
FOLDS = 5             # the other labels: cross-validation by sentence
MAX_ITER = 100        # lbfgs iterations: real labels converge in 30-60, control tasks (noise) stop here
BATCH_SIZE = 256      # sentences per forward pass


@dataclass(frozen=True)
class Labels:
    """One probing task: a label at each point, and the fits that test each point.

    A point is a token of a sentence (`sentence`: its index in the probed sentence list,
    `position`: its index in the model input `[SOS] input marker`). `fold[i]` is the fit in which
    point i is tested, its training set being every point of another fold; -1: in every fit's
    training set, tested in none.
    """

    name: str
    sentence: np.ndarray
    position: np.ndarray
    y: np.ndarray
    control: np.ndarray
    fold: np.ndarray


# ---- probing states: usable without a checkpoint ----

def probe_layers(states: np.ndarray, labels: Labels) -> pd.DataFrame:
    """One row per layer of `states` ([layers, points, d]): the probe's accuracies and the controls."""
    majority = _majority_acc(labels.y, labels.fold)
    rows = []
    for layer, x in enumerate(states):
        # One thread: these small fits gain nothing from more, and threads that spin-wait while
        # another process holds a core slow them down by an order of magnitude.
        # Control tasks fit noise until MAX_ITER: their warning says nothing.
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            train_acc, test_acc, n_train, n_test = _fit_score(x, labels.y, labels.fold)
            control_acc = _fit_score(x, labels.control, labels.fold)[1]
        rows.append({"layer": layer, "label": labels.name, "n_train": n_train, "n_test": n_test,
                     "train_acc": train_acc, "test_acc": test_acc, "control_acc": control_acc,
                     "majority_acc": majority})
    return pd.DataFrame(rows)


def _probe(y: np.ndarray):
    """A fresh probe; a training set of one class (tiny samples) can only predict that class."""
    if len(np.unique(y)) < 2:
        return DummyClassifier(strategy="most_frequent")
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=MAX_ITER))


def _fit_score(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> tuple[float, float, int, int]:
    """Training and test accuracy pooled over the fits, the mean training-set size and the test points."""
    train_hits = train_n = test_hits = test_n = 0
    folds = np.unique(fold[fold >= 0])
    for f in folds:
        train, test = fold != f, fold == f
        probe = _probe(y[train]).fit(x[train], y[train])
        train_hits += np.sum(probe.predict(x[train]) == y[train])
        test_hits += np.sum(probe.predict(x[test]) == y[test])
        train_n, test_n = train_n + train.sum(), test_n + test.sum()
    return train_hits / train_n, test_hits / test_n, round(train_n / len(folds)), int(test_n)


def _majority_acc(y: np.ndarray, fold: np.ndarray) -> float:
    """Test accuracy of answering each fit's commonest training label."""
    hits = 0
    for f in np.unique(fold[fold >= 0]):
        values, counts = np.unique(y[fold != f], return_counts=True)
        hits += np.sum(y[fold == f] == values[np.argmax(counts)])
    return hits / np.sum(fold >= 0)


# ---- the labels of sentences, from the grammar ----

def input_tags(example: Example) -> list[str]:
    """The grammar's tag of each input word before the '.', from the line's type tag."""
    return example.type_tag.split("\t")[0].split(" ")[:-1]


def aux_positions(example: Example) -> list[int]:
    """Word indices of a QF input's auxiliaries."""
    return [k for k, tag in enumerate(input_tags(example)) if tag.startswith("aux_")]


def first_and_main(example: Example) -> tuple[str, str]:
    """A QF input's first auxiliary and its main one (the first after the subject NP)."""
    return example.input[aux_positions(example)[0]], example.input[example.meta["main"]]


def pos_labels(sentences: list[Example], rng: np.random.Generator) -> Labels:
    """Every input word's tag; test points are the words of held-out types, control tags shuffled by type."""
    sentence, position, words, tags = [], [], [], []
    for i, e in enumerate(sentences):
        for k, tag in enumerate(input_tags(e)):
            sentence.append(i), position.append(k + 1), words.append(e.input[k]), tags.append(tag)
    words, tags = np.array(words), np.array(tags)
    types, first = np.unique(words, return_index=True)
    held_out = set()
    for tag in np.unique(tags):
        of_tag = types[tags[first] == tag]
        n = min(max(1, round(HELD_OUT_TYPES * len(of_tag))), len(of_tag) - 1)
        held_out.update(rng.choice(of_tag, n, replace=False))
    shuffled = dict(zip(types, rng.permutation(tags[first])))
    return Labels("pos", np.array(sentence), np.array(position), tags,
                  np.array([shuffled[w] for w in words]), np.where(np.isin(words, list(held_out)), 0, -1))


def aux_role_labels(sentences: list[Example], rng: np.random.Generator) -> Labels:
    """main / embedded at each auxiliary of the sentences that have two or more."""
    points = [(i, k, "main" if k == e.meta["main"] else "embedded")
              for i, e in enumerate(sentences) if len(aux_positions(e)) >= 2 for k in aux_positions(e)]
    if not points:
        raise HierGenError("no sampled declarative has two auxiliaries: aux_role cannot be probed on this run")
    sentence, word, y = (np.array(column) for column in zip(*points))
    return _by_sentence("aux_role", sentence, word + 1, y, rng)


def marker_labels(name: str, sentences: list[Example], offset: int, rng: np.random.Generator) -> Labels:
    """main_aux or first_aux: that auxiliary's identity at the marker of each generalization line
    (`offset`: the index of the first of these sentences in the probed sentence list)."""
    y = np.array([first_and_main(e)[name == "main_aux"] for e in sentences])
    sentence = np.arange(len(sentences)) + offset
    return _by_sentence(name, sentence, np.array([len(e.input) + 1 for e in sentences]), y, rng)


def _by_sentence(name: str, sentence: np.ndarray, position: np.ndarray, y: np.ndarray,
                 rng: np.random.Generator) -> Labels:
    """Labels cross-validated by sentence, the control giving each sentence another's labels."""
    ids, starts, counts = np.unique(sentence, return_index=True, return_counts=True)
    control = y.copy()
    for count in np.unique(counts):  # sentences trade labels with those of as many points
        same = np.flatnonzero(counts == count)
        for a, b in zip(same, rng.permutation(same)):
            control[starts[a]:starts[a] + count] = y[starts[b]:starts[b] + count]
    fold_of = dict(zip(ids, rng.permutation(len(ids)) % FOLDS))
    return Labels(name, sentence, position, y, control, np.array([fold_of[s] for s in sentence]))


# ---- sentences and states ----

def choose_sentences(train: list[Example], test: list[Example], n: int) -> tuple[list[Example], list[Example]]:
    """n distinct training declaratives and n generalization lines (QF; none for TI), seeded."""
    rng = random.Random(SEED)
    # One line per distinct input: with causal attention its words' states ignore what follows.
    declaratives = list({e.input: e for e in train}.values())
    general = [e for e in test if e.marker == "quest" and len(set(first_and_main(e))) == 2]
    return (rng.sample(declaratives, min(n, len(declaratives))), rng.sample(general, min(n, len(general))))


def make_labels(names: list[str], declaratives: list[Example], general: list[Example]) -> list[Labels]:
    """The requested labels of the chosen sentences (general ones follow the declaratives). Each
    label draws its held-out points and control from a seed of its own, whichever others are asked for."""
    made = {"pos": lambda rng: pos_labels(declaratives, rng),
            "aux_role": lambda rng: aux_role_labels(declaratives, rng),
            "main_aux": lambda rng: marker_labels("main_aux", general, len(declaratives), rng),
            "first_aux": lambda rng: marker_labels("first_aux", general, len(declaratives), rng)}
    return [made[name](np.random.default_rng([SEED, ALL_LABELS.index(name)])) for name in names]


@torch.no_grad()
def states_at(model: torch.nn.Module, vocab: WordVocabulary, sentences: list[Example], sentence: np.ndarray,
              position: np.ndarray, device: str, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Every layer's hidden state at the points (sentence, position) of `[SOS] input marker`:
    [layers + 1, points, d], from one forward pass per batch of sentences."""
    out = None
    for start in range(0, len(sentences), batch_size):
        batch = [torch.tensor([vocab.sos, *vocab.ids(e.input + (e.marker,))])
                 for e in sentences[start:start + batch_size]]
        lengths = torch.tensor([len(tokens) for tokens in batch])
        inputs = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True)
        record = Internals()
        model(inputs.to(device), lengths.to(device), internals=record)
        pick = np.flatnonzero((sentence >= start) & (sentence < start + len(batch)))
        states = torch.stack(record.hidden_states)[:, sentence[pick] - start, position[pick]]
        if out is None:
            out = np.empty((states.shape[0], len(sentence), states.shape[-1]), np.float32)
        out[:, pick] = states.float().cpu().numpy()
    return out


# ---- the command ----

def check_labels(names: list[str], task: str) -> None:
    """Refuse labels that do not exist, or that the run's task does not have."""
    for name in names:
        if name not in ALL_LABELS:
            raise HierGenError(f"unknown label {name!r}; known: {', '.join(ALL_LABELS)}")
        if name not in LABELS[task]:
            raise HierGenError(f"label {name!r} does not exist for the tense task (it has no auxiliaries); "
                               f"its labels: {', '.join(LABELS[task])}")


def probe_run(run: CheckpointRun, names: list[str], n_sentences: int) -> pd.DataFrame:
    """probe.csv of a run: every checkpoint's probes, layer by layer, for every label named."""
    data = load_task(run.config.data, ["test"])
    declaratives, general = choose_sentences(data.train, data.eval["test"], n_sentences)
    if not general and ("main_aux" in names or "first_aux" in names):
        raise HierGenError("the run's test split has no generalization line to probe main_aux or first_aux on")
    labels = make_labels(names, declaratives, general)
    sentence = np.concatenate([lab.sentence for lab in labels])
    position = np.concatenate([lab.position for lab in labels])
    ends = np.cumsum([len(lab.y) for lab in labels])
    tables = []
    for step, loaded in each_checkpoint(run):
        states = states_at(loaded.model, loaded.vocab, declaratives + general, sentence, position, run.device)
        for lab, points in zip(labels, np.split(states, ends[:-1], axis=1)):
            tables.append(probe_layers(points, lab).assign(step=step))
    return pd.concat(tables, ignore_index=True)[COLUMNS]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run(parser)
    parser.add_argument("--labels", default=None,
                        help="comma-separated labels to probe (default: all the task has: QF "
                             "pos,aux_role,main_aux,first_aux; TI pos)")
    add_count(parser, "--sentences", 1000, "declaratives, and generalization lines, to probe",
              minimum=2 * FOLDS)  # FOLDS-fold cross-validation by sentence


def command(args: argparse.Namespace) -> None:
    """Check the input, probe every checkpoint, then write probe.csv and one heatmap per label."""
    run = open_run(args)
    out = outputs(args, run.path)
    task = get_dataset(run.config.data.dataset).task
    names = list(dict.fromkeys(args.labels.split(","))) if args.labels else list(LABELS[task])
    check_labels(names, task)
    if run.config.model.family != "lm":
        raise HierGenError(f"{run.path}: probe reads a language model's states; this run trains the "
                           f"{run.config.model.family} model")
    table = probe_run(run, names, args.sentences)
    print(summary(table).to_string(float_format="%.2f"))
    out.write({"probe": table}, {f"probe_{name}": plot.probe_heatmap(table, name) for name in names})


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint's test accuracy by layer, per label, beside its controls."""
    last = table[table["step"] == table["step"].max()]
    out = last.pivot(index="label", columns="layer", values="test_acc")
    out.columns = [f"layer {layer}" for layer in out.columns]
    by_label = last.groupby("label")
    out["majority"] = by_label["majority_acc"].first()
    out["control (max)"] = by_label["control_acc"].max()
    out.index.name = f"test acc, step {table['step'].max()}"
    return out.loc[list(dict.fromkeys(table["label"]))]
