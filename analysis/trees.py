"""Tree projections: how tree-structured a checkpoint's sentence representations are (Murty et al.).

For a declarative of n words, with v_k the last layer's state of word k:
- contextual span vectors c(i, j) = Σ_{k=i..j} v_k from the normal forward pass;
- context-free span vectors f(i, j): the same sum from a pass in which every position may attend
  only to SOS and to the words i..j (at every layer);
- s(i, j) = cosine(f(i, j), c(i, j)): how little span (i, j) depends on its context.
The induced tree splits each span top-down where s(left) + s(right) is highest. Per checkpoint:

- t_score: per sentence, Σ over the induced tree's internal nodes of s(left) + s(right) minus the
  same for one uniformly random split of that node (seeded); the mean over sentences.
- t_parseval: unlabelled bracket F1 of the induced trees against the grammar's gold trees
  (brackets: spans of ≥ 2 words, the whole sentence included; micro-averaged over the corpus),
  beside the right-branching tree's F1, a baseline that needs no model.

    python -m analysis trees RUN [--sentences 1000] [--seed 42] [--out DIR]

Sentences are the declaratives (without '.') of training lines: QF question lines only, TI all.
With causal attention, the state of word k in the pass for span (i, j) depends on i and k only, not
on j: one masked pass per start i gives f(i, j) for every j — n passes per sentence, not n(n+1)/2.
"""
from __future__ import annotations

import argparse
import random
from collections import defaultdict
from typing import Union

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

import plot
from analysis.arguments import add_count, add_run, add_seed, outputs
from analysis.checkpoint_series import CheckpointRun, each_checkpoint, open_run
from data_utils import question, tense
from data_utils.config import DataConfig
from data_utils.grammar import Frame
from data_utils.load import read_split
from data_utils.registry import get_dataset
from layers import Internals
from util import HierGenError

Tree = Union[int, tuple["Tree", "Tree"]]  # a word's index, or a binary node (left, right)
GRAMMARS = {"question": question.GRAMMAR, "tense": tense.GRAMMAR}
BATCH_TOKENS = 16384  # tokens per forward pass: the activations of all layers stay well under 1 GB


# ---- binary trees over word indices ----

def splits(tree: Tree) -> list[tuple[int, int, int]]:
    """(first word, last word of the left part, last word) of every internal node, parents first."""
    if isinstance(tree, int):
        return []
    left, right = tree
    return [(_first(left), _last(left), _last(right))] + splits(left) + splits(right)


def _first(tree: Tree) -> int:
    return tree if isinstance(tree, int) else _first(tree[0])


def _last(tree: Tree) -> int:
    return tree if isinstance(tree, int) else _last(tree[1])


def brackets(tree: Tree) -> set[tuple[int, int]]:
    """The spans (first, last) of ≥ 2 words of a tree, the whole sentence included."""
    return {(i, j) for i, _, j in splits(tree)}


def right_branching(n: int) -> Tree:
    """(w0 (w1 (... (w_{n-2} w_{n-1}))))."""
    tree: Tree = n - 1
    for i in range(n - 2, -1, -1):
        tree = (i, tree)
    return tree


def bracket_f1(predicted: list[set], gold: list[set]) -> float:
    """Unlabelled bracket F1, precision and recall micro-averaged over the sentences."""
    matched = sum(len(p & g) for p, g in zip(predicted, gold))
    precision = matched / sum(map(len, predicted))
    recall = matched / sum(map(len, gold))
    return 2 * precision * recall / (precision + recall) if matched else 0.0


# ---- gold trees: the grammar's binary constituents ----

def gold_tree(frame: Frame) -> Tree:
    """The sentence's constituents: (subject NP, verb phrase), each NP and VP as below."""
    group = frame.verb - frame.main + 1  # QF: aux verb; TI: the verb alone
    obj = None if frame.vp == "intrans" else _noun_phrase(frame.vp, frame.verb + 1, group)
    return (_noun_phrase(frame.subject, 0, group), _verb_phrase(frame.main, group, obj))


def _verb_phrase(start: int, group: int, obj: Tree | None) -> Tree:
    """aux + (verb + object) with an auxiliary, verb + object without one; a verb without an object
    (intransitive, or its object extracted by a relative clause) is a single word."""
    verb = start + group - 1
    head = verb if obj is None else (verb, obj)
    return head if group == 1 else (start, head)


def _noun_phrase(kind: str, start: int, group: int) -> Tree:
    """An NP of the grammar's `kind` starting at word `start`; PPs and RCs attach to the noun
    phrase they follow: NP → NP PP, NP → NP RC."""
    noun = (start, start + 1)  # det N
    if kind == "bare":
        return noun
    if kind == "pp":
        return (noun, (start + 2, (start + 3, start + 4)))  # prep NP
    rel = start + 2
    if kind == "src_i":  # rel + its verb phrase
        return (noun, (rel, _verb_phrase(rel + 1, group, None)))
    if kind == "src_t":
        return (noun, (rel, _verb_phrase(rel + 1, group, (rel + 1 + group, rel + 2 + group))))
    # object relative: rel + a clause whose verb phrase lacks its object
    return (noun, (rel, ((rel + 1, rel + 2), _verb_phrase(rel + 3, group, None))))


# ---- the sentences ----

def training_sentences(cfg: DataConfig, n: int, seed: int) -> list[tuple[str, ...]]:
    """Up to n declaratives (without '.') of the training split, sampled without replacement:
    QF question lines only (their input is the declarative), TI all lines."""
    task = get_dataset(cfg.dataset).task
    lines = [e for e in read_split(cfg, "train") if task != "question" or e.marker == "quest"]
    if not lines:
        raise HierGenError(f"the training split of {cfg.dataset} holds no question line")
    return [e.input[:-1] for e in random.Random(seed).sample(lines, min(n, len(lines)))]


def gold_brackets(sentences: list[tuple[str, ...]], task: str) -> list[set[tuple[int, int]]]:
    return [brackets(gold_tree(GRAMMARS[task].parse(words)[0])) for words in sentences]


# ---- span similarities s(i, j) from the model ----

def _last_states(model: torch.nn.Module, inputs: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """The last layer's states [B, T, d] of the LM's forward pass, attention restricted to `allowed`."""
    recorded = Internals()
    model(inputs, internals=recorded, attn_mask=allowed)
    return recorded.hidden_states[-1]


def _sums_from_start(states: torch.Tensor) -> torch.Tensor:
    """states [S, n starts, n words, d] → sums [S, i, j] = Σ_{k=i..j} states[S, i, k] (0 for j < i)."""
    n = states.shape[1]
    from_start = torch.ones(n, n, dtype=torch.bool, device=states.device).triu()  # word k ≥ start i
    return (states * from_start[..., None]).cumsum(2)


def _charts_of_equal_length(model: torch.nn.Module, words: torch.Tensor, sos: int) -> torch.Tensor:
    """s(i, j) [S, n, n] (0 below the diagonal) of S sentences of n words (ids [S, n]), from one
    normal pass and one masked pass per start position, all in one forward each."""
    S, n = words.shape
    inputs = F.pad(words, (1, 0), value=sos)
    context = _last_states(model, inputs)[:, 1:]
    # The pass for start i: keys SOS and words i.. (positions i+1..); causality stops each word at
    # itself, so word k's state in that pass serves every span (i, j) with j ≥ k.
    keys = torch.arange(n + 1, device=words.device)
    allowed = (keys[None, :] == 0) | (keys[None, :] > torch.arange(n, device=words.device)[:, None])
    free = _last_states(model, inputs.repeat_interleave(n, 0), allowed.repeat(S, 1)[:, None, None, :])[:, 1:]
    f = _sums_from_start(free.reshape(S, n, n, -1))
    c = _sums_from_start(context[:, None].expand(S, n, n, -1))
    return F.cosine_similarity(f, c, dim=-1)


@torch.inference_mode()
def similarity_charts(model: torch.nn.Module, sentences: list[list[int]], sos: int,
                      batch_tokens: int = BATCH_TOKENS) -> list[np.ndarray]:
    """s(i, j) of each sentence (word ids, without SOS) as an n × n array (0 below the diagonal).

    Sentences of one length go through the model together, about `batch_tokens` tokens a pass.
    """
    device = next(model.parameters()).device
    by_length = defaultdict(list)
    for index, words in enumerate(sentences):
        by_length[len(words)].append(index)
    charts: list[np.ndarray] = [np.empty(0)] * len(sentences)
    for n, indices in by_length.items():
        per_pass = max(1, batch_tokens // (n * (n + 1)))
        for start in range(0, len(indices), per_pass):
            chunk = indices[start:start + per_pass]
            words = torch.tensor([sentences[k] for k in chunk], device=device)
            for k, chart in zip(chunk, _charts_of_equal_length(model, words, sos).cpu().numpy()):
                charts[k] = chart
    return charts


@torch.inference_mode()
def naive_similarity_chart(model: torch.nn.Module, words: list[int], sos: int) -> np.ndarray:
    """s(i, j) as the definition reads: one masked sequence per span (i, j), n(n+1)/2 of them (in
    one batch). What the shortcut of similarity_charts is tested and timed against."""
    n, device = len(words), next(model.parameters()).device
    inputs = torch.tensor([[sos, *words]], device=device)
    context = _last_states(model, inputs)[0, 1:]
    spans = [(i, j) for i in range(n) for j in range(i, n)]
    keys = torch.arange(n + 1, device=device)
    allowed = torch.stack([(keys == 0) | ((keys > i) & (keys <= j + 1)) for i, j in spans])
    free = _last_states(model, inputs.expand(len(spans), -1), allowed[:, None, None, :])[:, 1:]
    chart = np.zeros((n, n))
    for row, (i, j) in enumerate(spans):
        chart[i, j] = F.cosine_similarity(free[row, i:j + 1].sum(0), context[i:j + 1].sum(0), dim=0).item()
    return chart


# ---- induced trees and their scores ----

def induce_tree(s: np.ndarray, i: int = 0, j: int | None = None) -> Tree:
    """Top-down: split span (i, j) after word k* = argmax_k s(i, k) + s(k+1, j), then recurse."""
    j = len(s) - 1 if j is None else j
    if i == j:
        return i
    k = i + int(np.argmax(s[i, i:j] + s[i + 1:j + 1, j]))
    return (induce_tree(s, i, k), induce_tree(s, k + 1, j))


def tree_score(s: np.ndarray, tree: Tree, rng: np.random.Generator) -> float:
    """Σ over internal nodes (parents first) of s(i, k*) + s(k*+1, j) − [s(i, r) + s(r+1, j)],
    r a uniformly random split of the node."""
    score = 0.0
    for i, k, j in splits(tree):
        r = int(rng.integers(i, j))
        score += s[i, k] + s[k + 1, j] - s[i, r] - s[r + 1, j]
    return score


def checkpoint_scores(model: torch.nn.Module, sentences: list[list[int]], sos: int,
                      gold: list[set], seed: int) -> dict[str, float]:
    """t_score and t_parseval of one model on sentences (word ids) with their gold brackets."""
    charts = similarity_charts(model, sentences, sos)
    trees = [induce_tree(s) for s in charts]
    rng = np.random.default_rng(seed)  # the same random splits for a checkpoint, whichever others run
    return {"t_score": float(np.mean([tree_score(s, t, rng) for s, t in zip(charts, trees)])),
            "t_parseval": bracket_f1([brackets(t) for t in trees], gold)}


def trees_frame(run: CheckpointRun, sentences: list[tuple[str, ...]], seed: int) -> pd.DataFrame:
    """trees.csv of a checkpoint run: one row per checkpoint."""
    task = get_dataset(run.config.data.dataset).task
    gold = gold_brackets(sentences, task)
    baseline = bracket_f1([brackets(right_branching(len(words))) for words in sentences], gold)
    rows = []
    for step, loaded in each_checkpoint(run):
        ids = [loaded.vocab.ids(words) for words in sentences]
        rows.append({"step": step, "n_sentences": len(sentences),
                     **checkpoint_scores(loaded.model, ids, loaded.vocab.sos, gold, seed),
                     "right_branching_f1": baseline})
    return pd.DataFrame(rows)


# ---- command line ----

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run(parser)
    add_count(parser, "--sentences", 1000, "declaratives sampled from the training split")
    add_seed(parser, 42, "seed of the sample and of the random splits")


def command(args: argparse.Namespace) -> None:
    """trees.csv and its figure in the output folder; a summary table on stdout."""
    run = open_run(args)
    out = outputs(args, run.path)
    if run.config.model.family != "lm":
        raise HierGenError(f"{run.path}: trees needs a causal LM; this run trained a "
                           f"{run.config.model.family} model")
    table = trees_frame(run, training_sentences(run.config.data, args.sentences, args.seed), args.seed)
    print(table.to_string(index=False, float_format="%.3f"))
    out.write({"trees": table}, {"trees": plot.tree_scores(table, run.name)})
