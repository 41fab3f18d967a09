"""Per checkpoint: the weight norm and statistics, and each layer's attention entropy read from the real forward pass.

    python -m analysis internals RUN [--sentences 200] [--data_dir DIR] [--device auto] [--out DIR]

`weight_norm` is √Σ‖p‖² over all of the model's parameters. `attn_entropy_layer{l}` is the entropy
(nats) of layer l's attention weights of a query position over the keys it may attend to, averaged
over the heads and over the sentence's real positions, then over the sentences: a fixed sample of
--sentences lines of the val split (the same lines for every checkpoint), each read as in training
(the LM: `[SOS] input marker output`). A query that may attend to k keys has an entropy between 0
(all its weight on one key) and log k (uniform); with causal attention the first position has one
key, so its entropy is always 0. `attn_entropy_mean` is the mean over the layers. The seq2seq
model's layers are its encoder's, then its decoder's (self-attention); the classifier's are its
encoder's.

The weights are those the model's own forward pass computes (`layers.Internals`): each layer
attends over the previous layer's output, not over the embeddings.

The 14 `weights/...` columns are the statistics training logs at each evaluation
(models/weight_statistics.py), computed from the checkpoint: at a step where the run also logged
them, the two agree.

Writes internals.csv (step, weight_norm, attn_entropy_layer1 ... attn_entropy_layerL,
attn_entropy_mean, weights/l1 ... weights/var_b) and internals.png.
"""
from __future__ import annotations

import argparse
import random

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

import plot
from analysis.arguments import add_count, add_run, outputs
from analysis.checkpoint_series import CheckpointRun, each_checkpoint, open_run
from analysis.outputs import print_steps
from collate import Batch
from data_utils.load import read_eval, task_vocabulary
from evaluation import make_eval_batches
from interfaces.batch_views import decoder_view, source_view
from layers import Internals
from models.weight_statistics import weight_statistics

SAMPLE_SEED = 0  # the val lines every checkpoint (and every rerun) is read on


def weight_norm(model: nn.Module) -> float:
    """√Σ‖p‖² over every parameter: the norm of the parameters' norms."""
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach())
                                                       for p in model.parameters()])))


def attention_weights(model: nn.Module, family: str, batch: Batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, its attention weights [B, heads, T, T] from one forward pass over the batch's
    lines, and the real lengths [B] of the sequence it attends over."""
    internals = Internals()
    if family == "lm":
        model(batch.inputs, batch.lengths, internals=internals)
        lengths = [batch.lengths] * len(internals.attentions)
    elif family == "enc":
        tokens, token_lengths = source_view(batch, with_sos=True)
        model(tokens, token_lengths, internals=internals)
        lengths = [token_lengths] * len(internals.attentions)
    else:
        source, source_lengths = source_view(batch, with_sos=False)
        target_in, _, target_lengths = decoder_view(batch)
        model(source, source_lengths, target_in, target_lengths, internals=internals)
        n_encoder = len(model.trafo["encoder"].layers)
        lengths = [source_lengths] * n_encoder + [target_lengths] * (len(internals.attentions) - n_encoder)
    return list(zip(internals.attentions, lengths))


def sentence_entropies(weights: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B]: per sentence, the entropy of each real query's weights (masked keys weigh 0 and add 0),
    averaged over heads and the sentence's real positions."""
    per_query = -torch.special.xlogy(weights, weights).sum(-1).mean(1)  # [B, T]
    real = torch.arange(weights.shape[-2], device=weights.device)[None, :] < lengths[:, None]
    return torch.where(real, per_query, 0.0).sum(-1) / lengths


@torch.inference_mode()
def attention_entropy(model: nn.Module, family: str, batches: list[Batch], device: str) -> list[float]:
    """Each layer's attention entropy (nats), averaged over the sentences of `batches`."""
    sums, n = 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        sums = sums + np.array([float(sentence_entropies(w, lengths).sum())
                                for w, lengths in attention_weights(model, family, batch)])
        n += len(batch.lengths)
    return (sums / n).tolist()


def sample_batches(run: CheckpointRun, sentences: int) -> list[Batch]:
    """A fixed sample of `sentences` val lines of the run (all of them if it has fewer), batched."""
    examples = read_eval(run.config.data, ["val"])["val"]
    picked = random.Random(SAMPLE_SEED).sample(examples, min(sentences, len(examples)))
    return make_eval_batches(picked, task_vocabulary(run.config.data.dataset), run.config.train.eval_batch_size)


def internals_table(run: CheckpointRun, sentences: int = 200) -> pd.DataFrame:
    """internals.csv: per checkpoint, the weight norm, each layer's mean attention entropy and the
    weight statistics."""
    batches = sample_batches(run, sentences)
    rows = []
    for step, loaded in each_checkpoint(run):
        entropy = attention_entropy(loaded.model, loaded.config.model.family, batches, run.device)
        rows.append({"step": step, "weight_norm": weight_norm(loaded.model),
                     **{f"attn_entropy_layer{i}": h for i, h in enumerate(entropy, 1)},
                     "attn_entropy_mean": sum(entropy) / len(entropy), **weight_statistics(loaded.model)})
    return pd.DataFrame(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run(parser)
    add_count(parser, "--sentences", 200, "val lines the attention entropy is averaged over")


def command(args: argparse.Namespace) -> None:
    """Read every checkpoint, then write internals.csv and its figure; print a summary."""
    run = open_run(args)
    out = outputs(args, run.path)
    table = internals_table(run, args.sentences)
    print_steps(table, ["weight_norm", "attn_entropy_mean"])
    out.write({"internals": table}, {"internals": plot.weights_and_attention(table, run.name)})
