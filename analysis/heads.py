"""Attention heads per checkpoint: where the decision looks, which heads it needs, and the subspace of the rule.

    python -m analysis heads RUN [--sentences 1000] [--ablation mean|zero] [--top_k 3] [--out DIR]

The lines: --sentences generalization lines drawn (seed 42) from the run's test split, those on
which the rules answer differently (QF: the first and the main auxiliary differ; TI: the subject
noun and the noun nearest before the main verb differ in number). Each is read as the model reads
it up to its decision position (`Sequence.eval_pos`), the input position whose logits decide the
task: `[SOS] input marker` for QF (the marker predicts the fronted auxiliary), `[SOS] input marker
output` up to the word before the main verb for TI. Each rule has its cue: QF the main auxiliary
(hierarchical) and the first auxiliary (linear); TI the subject noun and the most recent noun,
each at both of its places in what the model has read (the input, and the output written so far).

Per checkpoint, numbering layers 1..L and heads 1..H:
  heads.csv           step, layer, head, mass_main, mass_first, mass_other, n_lines: the attention
                      weight of the decision position on the hierarchical cue, on the linear cue
                      and on everything else (they sum to 1), averaged over the lines; from the
                      model's own forward pass.
  heads_ablation.csv  step, layer, head, accuracy, hierarchical, linear, other: the task accuracy
                      and the shares of the lines answered by each rule (argmax over the task's
                      candidates, as evaluation does) with that head's output (its slice of the
                      input of the output projection) replaced by its mean over the lines at each
                      position (`--ablation zero`: by 0); the unablated model as layer = head = -1.
  heads_top.csv       step, rank, layer, head, accuracy, hierarchical, linear, other, moved: the
                      heads chosen greedily whose joint ablation moves the answers most, and the
                      shares with the heads of rank 1..rank ablated together. `moved` is the total
                      variation distance between those (hierarchical, linear, other) shares and the
                      unablated ones: for a model that answers by one rule, how much of that rule's
                      share the heads take away.
  heads_subspace.csv  step, layer, pr_states, pr_between: at the decision position, for layers
                      0..L (0 = embeddings plus positions), the participation ratio (Σλ)²/Σλ² of
                      the eigenvalues of the hidden states' covariance (the number of dimensions
                      they effectively use), and of the between-class covariance of the classes of
                      the hierarchical answer (QF: the main auxiliary, at most 3 dimensions for 4
                      classes; TI: the subject-agreeing verb form).
Figures: heads.png (per checkpoint, layer x head: mass_main - mass_first), heads_ablation.png (the
rule shares over training, unablated and with the top heads ablated; per checkpoint, layer x head:
the answers each head's ablation moves), heads_subspace.png (both ratios by layer over training).

Cost per checkpoint: one forward pass over the lines for the attention, the states and the means,
then --top_k sweeps over every head (the first gives heads_ablation.csv, each further one a greedy
step). An ablated pass starts from the clean states at the input of the first ablated layer, so
ablating a head of layer l runs layers l..L over the prefix only: on average about half a forward
pass of the whole line per head.
"""
from __future__ import annotations

import argparse
import random
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

import plot
from analysis.arguments import add_count, add_run, outputs
from analysis.checkpoint_series import CheckpointRun, each_checkpoint, open_run
from analysis.probe import aux_positions, input_tags
from data_utils.example import Example
from data_utils.load import read_eval, task_vocabulary
from data_utils.registry import get_dataset
from layers import Internals
from sequence import encode
from util import HierGenError
from vocabulary import WordVocabulary

SEED = 42
COLUMNS = ["step", "layer", "head", "mass_main", "mass_first", "mass_other", "n_lines"]
ABLATION_COLUMNS = ["step", "layer", "head", "accuracy", "hierarchical", "linear", "other"]
TOP_COLUMNS = ["step", "rank", "layer", "head", "accuracy", "hierarchical", "linear", "other", "moved"]
SUBSPACE_COLUMNS = ["step", "layer", "pr_states", "pr_between"]
SHARES = ["accuracy", "hierarchical", "linear", "other"]
RULES = {"hierarchical": ("hierarchical", "agree_subject"), "linear": ("linear", "agree_recent")}  # QF, TI
CUES = {"question": ("main auxiliary", "first auxiliary"), "tense": ("subject noun", "most recent noun")}
Head = tuple[int, int]  # (layer, head), both from 0


# ---- the lines, as the model reads them up to the decision ----

@dataclass(frozen=True)
class Lines:
    """Lines cut after their decision position (the last real token), padded with 0.

    `main` and `first` mark the positions of the hierarchical and the linear rule's cue; `gold`,
    `hierarchical` and `linear` are the tokens the task and each rule want at the decision,
    `candidates` those its argmax may choose from.
    """

    tokens: torch.Tensor      # [n, T]
    lengths: torch.Tensor     # [n]
    main: torch.Tensor        # [n, T] bool
    first: torch.Tensor       # [n, T] bool
    gold: torch.Tensor        # [n]
    hierarchical: torch.Tensor  # [n]
    linear: torch.Tensor      # [n]
    candidates: torch.Tensor  # [n, n_classes] bool

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def last(self) -> torch.Tensor:
        """[n]: each line's decision position."""
        return self.lengths - 1

    def batches(self, size: int) -> Iterator["Lines"]:
        """Consecutive lines, `size` at a time, trimmed to their longest."""
        for start in range(0, len(self), size):
            part = {f.name: getattr(self, f.name)[start:start + size] for f in fields(self)}
            T = int(part["lengths"].max())
            yield replace(self, **{**part, **{name: part[name][:, :T] for name in ("tokens", "main", "first")}})

    def to(self, device: str) -> "Lines":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """[3]: how many lines the decision logits [n, n_classes] answer correctly, hierarchically, linearly."""
        pred = logits.masked_fill(~self.candidates, float("-inf")).argmax(-1)
        return torch.stack([(pred == self.gold).sum(), (pred == self.hierarchical).sum(), (pred == self.linear).sum()])


def generalization_lines(test: list[Example], n: int) -> list[Example]:
    """n lines (all if fewer) drawn with seed 42 from those where the rules give different answers."""
    general = [e for e in test if e.target is not None and e.target.answers]
    return random.Random(SEED).sample(general, min(n, len(general)))


def cue_words(example: Example, task: str) -> tuple[int, int]:
    """Input word indices of the hierarchical and the linear rule's cue: QF the main and the first
    auxiliary; TI the subject noun (the first) and the noun nearest before the main verb."""
    if task == "question":
        return example.meta["main"], aux_positions(example)[0]
    nouns = [k for k, tag in enumerate(input_tags(example)[:example.meta["main"]]) if tag.startswith("n_")]
    return nouns[0], nouns[-1]


def cue_positions(example: Example, word: int) -> list[int]:
    """Where input word `word` stands in `[SOS] input marker output[:out_index]`: in the input, and
    in the output written so far where the output copies it (TI's nouns)."""
    places = [word + 1]
    if word < example.target.out_index and example.output[word] == example.input[word]:
        places.append(len(example.input) + 2 + word)
    return places


def encode_lines(examples: list[Example], vocab: WordVocabulary, task: str) -> Lines:
    """The lines as the model reads them up to the decision, sorted by length (batches of like lengths)."""
    examples = sorted(examples, key=lambda e: len(e.input) + e.target.out_index)
    seqs = [encode(e, vocab) for e in examples]
    lengths = torch.tensor([s.eval_pos + 1 for s in seqs])
    n, T = len(seqs), int(lengths.max())
    tokens = torch.zeros(n, T, dtype=torch.long)
    cues = torch.zeros(2, n, T, dtype=torch.bool)
    candidates = torch.zeros(n, len(vocab) + 2, dtype=torch.bool)
    for i, (e, s) in enumerate(zip(examples, seqs)):
        tokens[i, :lengths[i]] = torch.tensor(s.tokens[:lengths[i]])
        for cue, word in zip(cues, cue_words(e, task)):
            cue[i, cue_positions(e, word)] = True
        candidates[i, list(s.candidates) if s.candidates is not None else slice(None)] = True
    answer = [dict(s.answers) for s in seqs]
    rule = {name: torch.tensor([next(a[r] for r in RULES[name] if r in a) for a in answer]) for name in RULES}
    return Lines(tokens, lengths, cues[0], cues[1], torch.tensor([s.gold for s in seqs]), rule["hierarchical"],
                 rule["linear"], candidates)


# ---- the forward passes: clean, and with heads ablated ----

def encoder_layers(model: nn.Module) -> nn.ModuleList:
    return model.trafo["encoder"].layers


def clean_pass(model: nn.Module, batch: Lines, head_outputs: list | None = None) -> tuple[Internals, torch.Tensor]:
    """The model's own forward pass over a batch, padded (so that a head's output keeps its [B, T]
    layout): every layer's states and attention weights, and the decision logits [B, n_classes].
    With `head_outputs`, each layer's head outputs [B, T, heads * d_head] are appended to it."""
    record = Internals()
    hooks = [] if head_outputs is None else [
        layer.self_attn.multi_head_merge.register_forward_pre_hook(lambda _, args: head_outputs.append(args[0]))
        for layer in encoder_layers(model)]
    try:
        logits = model(batch.tokens, batch.lengths, pack=False, internals=record)
    finally:
        for hook in hooks:
            hook.remove()
    return record, logits[torch.arange(len(batch)), batch.last]


def decide_from(model: nn.Module, states: torch.Tensor, batch: Lines, start: int) -> torch.Tensor:
    """The decision logits [B, n_classes] of layers start.. run on `states`, their input: the layers
    below an ablated head compute what they computed in the clean pass, so they are not rerun."""
    mask = model.attention_mask(states.shape[1], batch.lengths, causal=True)
    for layer in encoder_layers(model)[start:]:
        states = layer(states, mask)
    return model.output(states[torch.arange(len(batch)), batch.last])


@contextmanager
def ablated(model: nn.Module, heads: list[Head], values: list[torch.Tensor]):
    """Within it, each head (layer, head) outputs values[layer][t] at position t ([T, heads * d_head]:
    the head's slice is used) instead of its own output: a forward pre-hook on the output projection."""
    hooks = []
    for layer in sorted({layer for layer, _ in heads}):
        attention = encoder_layers(model)[layer].self_attn
        replaced = torch.zeros(attention.n_heads, attention.d_head, dtype=torch.bool, device=values[layer].device)
        replaced[[head for at, head in heads if at == layer]] = True

        def hook(_, args, replaced=replaced.flatten(), value=values[layer]):
            return (torch.where(replaced, value[:args[0].shape[1]], args[0]),)
        hooks.append(attention.multi_head_merge.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@dataclass
class Clean:
    """What one clean pass over the lines gives."""

    masses: np.ndarray         # [layers, heads, 3]: mean attention on main, first, other
    states: np.ndarray         # [layers + 1, n, d] at the decision position
    means: list[torch.Tensor]  # per layer [T, heads * d_head]: the head outputs' mean at each position
    shares: np.ndarray         # accuracy, hierarchical, linear, other


@torch.inference_mode()
def read_clean(model: nn.Module, lines: Lines, batch_size: int) -> Clean:
    """Attention masses, decision states, mean head outputs and the rule shares, in one pass."""
    n, T = lines.tokens.shape
    masses, states, counts = 0.0, [], 0
    sums = [0.0] * len(encoder_layers(model))
    per_position = torch.zeros(T, 1, device=lines.tokens.device)
    for batch in lines.batches(batch_size):
        outputs = []
        record, logits = clean_pass(model, batch, outputs)
        real = (torch.arange(batch.tokens.shape[1], device=batch.tokens.device) < batch.lengths[:, None]).float()
        per_position[:real.shape[1]] += real.sum(0)[:, None]
        sums = [s + _padded_sum(x * real[..., None], T) for s, x in zip(sums, outputs)]
        masses = masses + _cue_masses(record.attentions, batch)
        states.append(torch.stack(record.hidden_states)[:, torch.arange(len(batch)), batch.last].float().cpu())
        counts = counts + batch.score(logits)
    return Clean(masses.cpu().numpy() / n, torch.cat(states, 1).numpy(), [s / per_position for s in sums],
                 _shares(counts, n))


def _padded_sum(x: torch.Tensor, T: int) -> torch.Tensor:
    """x [B, t, k] summed over the batch, as [T, k] (zeros past t)."""
    out = x.new_zeros(T, x.shape[-1])
    out[:x.shape[1]] = x.sum(0)
    return out


def _cue_masses(attentions: list[torch.Tensor], batch: Lines) -> torch.Tensor:
    """[layers, heads, 3]: the decision position's attention on main, first and the rest, summed over lines."""
    weights = torch.stack([a[torch.arange(len(batch)), :, batch.last] for a in attentions])  # [L, B, heads, T]
    other = ~(batch.main | batch.first)
    return torch.stack([(weights * cue[None, :, None]).sum((1, 3)) for cue in (batch.main, batch.first, other)], -1)


def _shares(counts: torch.Tensor, n: int) -> np.ndarray:
    """accuracy, hierarchical, linear, other from the counts of correct, hierarchical, linear answers."""
    correct, hierarchical, linear = counts.cpu().tolist()
    return np.array([correct, hierarchical, linear, n - hierarchical - linear]) / n


@torch.inference_mode()
def sweep(model: nn.Module, lines: Lines, values: list[torch.Tensor], base: list[Head],
          batch_size: int) -> dict[Head, np.ndarray]:
    """Per head not in `base`: the rule shares with it and the `base` heads ablated together."""
    attention = encoder_layers(model)[0].self_attn
    heads = [(layer, head) for layer in range(len(encoder_layers(model))) for head in range(attention.n_heads)
             if (layer, head) not in base]
    counts = {head: 0 for head in heads}
    for batch in lines.batches(batch_size):
        record, _ = clean_pass(model, batch)
        for head in heads:
            together = [*base, head]
            start = min(layer for layer, _ in together)
            with ablated(model, together, values):
                logits = decide_from(model, record.hidden_states[start], batch, start)
            counts[head] = counts[head] + batch.score(logits)
    return {head: _shares(count, len(lines)) for head, count in counts.items()}


def moved(shares: np.ndarray, clean: np.ndarray) -> np.ndarray | float:
    """Total variation distance between (hierarchical, linear, other) shares, the last three of
    SHARES along the last axis: the share of answers that changed rule, net."""
    return np.abs(shares[..., 1:] - clean[..., 1:]).sum(-1) / 2


def greedy_top(model: nn.Module, lines: Lines, values: list[torch.Tensor], clean: np.ndarray,
               single: dict[Head, np.ndarray], top_k: int, batch_size: int) -> list[tuple[Head, np.ndarray]]:
    """The top_k heads chosen one at a time, each the one whose ablation together with those before
    it moves the answers most (ties: the lowest layer and head), with the shares of each step."""
    chosen, results = [], single
    for rank in range(top_k):
        head = max(results, key=lambda h: moved(results[h], clean))
        chosen.append((head, results[head]))
        if rank + 1 < top_k:
            results = sweep(model, lines, values, [h for h, _ in chosen], batch_size)
    return chosen


# ---- the subspace of the rule ----

def participation_ratio(eigenvalues: np.ndarray) -> float:
    """(Σλ)²/Σλ²: 1 when one direction holds all the variance, d when d directions hold it equally."""
    eigenvalues = np.clip(eigenvalues, 0, None)
    return float(eigenvalues.sum() ** 2 / (eigenvalues ** 2).sum()) if eigenvalues.any() else float("nan")


def covariance_pr(x: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The participation ratio of the (weighted) covariance of the rows of x, from its singular values."""
    w = np.ones(len(x)) if weights is None else np.asarray(weights, float)
    x = np.asarray(x, np.float64)
    centred = (x - (w @ x) / w.sum()) * np.sqrt(w / w.sum())[:, None]
    return participation_ratio(np.linalg.svd(centred, compute_uv=False) ** 2)


def subspace_rows(states: np.ndarray, classes: np.ndarray) -> pd.DataFrame:
    """Per layer of `states` [layers, n, d]: the participation ratio of the states' covariance and of
    the between-class covariance (the class means, weighted by class size)."""
    labels, inverse, sizes = np.unique(classes, return_inverse=True, return_counts=True)
    rows = []
    for layer, x in enumerate(states):
        means = np.stack([x[inverse == c].mean(0) for c in range(len(labels))])
        rows.append({"layer": layer, "pr_states": covariance_pr(x), "pr_between": covariance_pr(means, sizes)})
    return pd.DataFrame(rows)


# ---- a checkpoint, a run ----

def checkpoint_tables(model: nn.Module, lines: Lines, ablation: str, top_k: int,
                      batch_size: int) -> dict[str, pd.DataFrame]:
    """heads, heads_ablation, heads_top and heads_subspace of one model in eval mode (without the step
    column): one clean pass over the lines, then `top_k` sweeps over the heads."""
    clean = read_clean(model, lines, batch_size)
    values = clean.means if ablation == "mean" else [torch.zeros_like(m) for m in clean.means]
    single = sweep(model, lines, values, [], batch_size)
    top = greedy_top(model, lines, values, clean.shares, single, top_k, batch_size)
    n_layers, n_heads = clean.masses.shape[:2]
    layer, head = (index.ravel() + 1 for index in np.indices((n_layers, n_heads)))
    masses = clean.masses.reshape(-1, 3)
    return {
        "heads": pd.DataFrame({"layer": layer, "head": head, "mass_main": masses[:, 0], "mass_first": masses[:, 1],
                               "mass_other": masses[:, 2], "n_lines": len(lines)}),
        "heads_ablation": pd.DataFrame([_share_row((-1, -1), clean.shares)]
                                       + [_share_row((at + 1, h + 1), shares) for (at, h), shares in single.items()]),
        "heads_top": pd.DataFrame([{"rank": rank, **_share_row((at + 1, h + 1), shares),
                                    "moved": float(moved(shares, clean.shares))}
                                   for rank, ((at, h), shares) in enumerate(top, 1)]),
        "heads_subspace": subspace_rows(clean.states, lines.hierarchical.cpu().numpy()),
    }


def _share_row(head: Head, shares: np.ndarray) -> dict:
    return {"layer": head[0], "head": head[1], **dict(zip(SHARES, shares))}


def heads_tables(run: CheckpointRun, n_lines: int, ablation: str = "mean", top_k: int = 3) -> dict[str, pd.DataFrame]:
    """The four tables of a run, every checkpoint's rows in step order."""
    task = get_dataset(run.config.data.dataset).task
    general = generalization_lines(read_eval(run.config.data, ["test"])["test"], n_lines)
    if not general:
        raise HierGenError(f"{run.path}: its test split has no generalization line (where the rules disagree)")
    lines = encode_lines(general, task_vocabulary(run.config.data.dataset), task).to(run.device)
    tables: dict[str, list[pd.DataFrame]] = {}
    for step, loaded in each_checkpoint(run):
        for name, table in checkpoint_tables(loaded.model, lines, ablation, top_k,
                                             run.config.train.eval_batch_size).items():
            tables.setdefault(name, []).append(table.assign(step=step))
    columns = {"heads": COLUMNS, "heads_ablation": ABLATION_COLUMNS, "heads_top": TOP_COLUMNS,
               "heads_subspace": SUBSPACE_COLUMNS}
    return {name: pd.concat(parts, ignore_index=True)[columns[name]] for name, parts in tables.items()}


# ---- the command ----

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run(parser)
    add_count(parser, "--sentences", 1000, "generalization lines of the test split to read")
    parser.add_argument("--ablation", choices=("mean", "zero"), default="mean",
                        help="replace a head's output by its mean over the lines at each position, or by 0 "
                             "(default: mean)")
    add_count(parser, "--top_k", 3, "heads chosen greedily whose joint ablation moves the answers most")


def command(args: argparse.Namespace) -> None:
    """Check the input, read every checkpoint, then write the four tables and three figures."""
    run = open_run(args)
    out = outputs(args, run.path)
    model = run.config.model
    if model.family != "lm":
        raise HierGenError(f"{run.path}: heads reads a causal language model's attention; this run trained "
                           f"the {model.family} model")
    if args.top_k > model.encoder_n_layers * model.n_heads:
        raise HierGenError(f"--top_k {args.top_k} but the model has {model.encoder_n_layers * model.n_heads} heads")
    tables = heads_tables(run, args.sentences, args.ablation, args.top_k)
    cues = CUES[get_dataset(run.config.data.dataset).task]
    print(summary(tables, cues))
    out.write(tables, {"heads": plot.head_attention(tables["heads"], cues, run.name),
                       "heads_ablation": plot.head_ablation(with_moved(tables["heads_ablation"]), tables["heads_top"],
                                                            args.ablation, run.name),
                       "heads_subspace": plot.head_subspace(tables["heads_subspace"], run.name)})


def with_moved(ablation: pd.DataFrame) -> pd.DataFrame:
    """heads_ablation.csv with `moved`: the answers each ablation moves from its checkpoint's unablated shares."""
    clean = ablation[ablation["layer"] == -1].set_index("step")[SHARES]
    return ablation.assign(moved=moved(ablation[SHARES].to_numpy(), clean.loc[ablation["step"]].to_numpy()))


def summary(tables: dict[str, pd.DataFrame], cues: tuple[str, str]) -> str:
    """The last checkpoint: the heads that lean most to each cue (mass_main - mass_first), and the
    shares unablated and with the top heads ablated."""
    step = tables["heads"]["step"].max()
    last = tables["heads"][tables["heads"]["step"] == step]
    lean = last["mass_main"] - last["mass_first"]
    looks = [f"leans most to the {name}: layer {last.loc[row, 'layer']} head {last.loc[row, 'head']} "
             f"({cues[0]} {last.loc[row, 'mass_main']:.2f}, {cues[1]} {last.loc[row, 'mass_first']:.2f})"
             for name, row in zip(cues, (lean.idxmax(), lean.idxmin()))]
    ablation, top = (tables[name][tables[name]["step"] == step] for name in ("heads_ablation", "heads_top"))
    heads_ablated = [f"L{layer}H{head}" for layer, head in zip(top["layer"], top["head"])]
    shown = pd.concat([ablation[ablation["layer"] == -1].assign(ablated="none"),
                       top.assign(ablated=[" ".join(heads_ablated[:rank]) for rank in top["rank"]])])
    return "\n".join([f"step {step}, {last['n_lines'].iloc[0]} lines", *looks,
                      shown[["ablated", *SHARES]].to_string(index=False, float_format="%.3f")])
