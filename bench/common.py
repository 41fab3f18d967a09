"""What the benchmarks share: the paper configuration, FLOP counts and the matmul reference rates.

FLOPs are counted on real tokens only (padding is overhead, not work): 2·m·n·k per matmul,
a training step is 3× its forward pass, causal attention counts the (query, key) pairs it keeps.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from collate import Batch  # noqa: E402
from config import parse_config  # noqa: E402
from trainer import Trainer  # noqa: E402
from training_utils import Run  # noqa: E402

# The paper's command (README), without run directory and W&B.
PAPER_FLAGS = ["--callback", "--batch_size", "8", "--dataset", "question_qf_disamb",
               "--disamb_num", "0", "--max_train_steps", "300000", "--encoder_n_layers", "6",
               "--lr", "1e-4", "--num_warmup_steps", "10000", "--weight_decay", "0.0",
               "--max_grad_norm", "1.0", "--eval_every", "2000", "--seed", "42", "--tied-embedding"]
MATMUL_SIZE = 2048


def bench_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads for the model and the matmul reference alike")
    parser.add_argument("--data_dir", default="data_utils")
    parser.add_argument("--device", default="cpu")
    return parser


def paper_run(data_dir: str, device: str, *extra: str) -> Run:
    """The run of the paper configuration (fresh weights), as train_transformers.py builds it."""
    return Trainer(parse_config([*PAPER_FLAGS, "--data_dir", data_dir, "--device", device, *extra],
                                environ={})).runs[0]


def forward_flops(model: torch.nn.Module, lengths: torch.Tensor) -> float:
    """FLOPs of one causal LM forward pass over sequences of these real lengths."""
    layer = model.trafo["encoder"].layers[0]
    d, d_ff = layer.linear1.in_features, layer.linear1.out_features
    n_layers = len(model.trafo["encoder"].layers)
    n_tokens = model.input_embedding.num_embeddings
    N = float(lengths.sum())
    pairs = float((lengths * (lengths + 1) // 2).sum())
    # q, kv and merge projections; the two FF matmuls; QKᵀ and AV over the kept pairs
    per_layer = 2 * N * d * 4 * d + 2 * N * d * d_ff * 2 + 2 * 2 * pairs * d
    return n_layers * per_layer + 2 * N * d * n_tokens


def matmul_rate() -> float:
    """fp32 FLOP/s of one large square torch.matmul, the machine's matmul rate; median of 3 after
    a warm-up."""
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    a @ b
    times = []
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * MATMUL_SIZE ** 3 / statistics.median(times)


def describe_rate(rate: float) -> str:
    return f"matmul {MATMUL_SIZE}³ fp32 {rate / 1e9:.1f} GFLOP/s"


def describe_machine(threads: int) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"threads {threads} of {os.cpu_count()} cores; load average {load}; "
            f"torch {torch.__version__}")


def eval_sample(run: Run, lines_per_split: int) -> dict[str, list[Batch]]:
    """About `lines_per_split` lines of each evaluation split (0: all), in batches evenly spread
    over the length-sorted split."""
    per_split = -(-lines_per_split // run.cfg.train.eval_batch_size)
    return {split: _spread(batches, per_split) for split, batches in run.eval_batches.items()}


def _spread(batches: list[Batch], k: int) -> list[Batch]:
    """k batches evenly spaced over the list (all of them when k is 0 or too large)."""
    if k <= 0 or k >= len(batches):
        return batches
    if k == 1:
        return batches[:1]
    return [batches[round(i * (len(batches) - 1) / (k - 1))] for i in range(k)]
