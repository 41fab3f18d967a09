"""Evaluation of val + test in the paper configuration: FLOP rate ÷ fp32 torch.matmul rate, and
the time of the fused pass (losses and accuracy from one forward pass per batch, what the run
runs) ÷ the time of two separate passes (a loss pass, then an accuracy pass, as the research code
ran them), measured in alternating rounds in one process.

    python bench/evaluate.py --threads 1

A line is ~1 GFLOP of work, so by default each round evaluates about `--lines_per_split` lines per
split, in batches evenly spread over the length-sorted split; `--lines_per_split 0` takes them all.
"""
from __future__ import annotations

import statistics
import time

import torch

from common import (bench_parser, describe_machine, describe_rate, forward_flops, matmul_rate,
                    eval_sample, paper_run)

from collate import Batch  # noqa: E402  (common puts the repository on the path)
from evaluation import evaluate  # noqa: E402


@torch.inference_mode()
def two_passes(interface, batches: list[Batch]) -> tuple[float, int]:
    """The research code's evaluation: one pass for the losses, another for the accuracy."""
    interface.model.eval()
    loss_sum = n_tokens = 0.0
    for batch in batches:
        out = interface(batch)
        loss_sum += out.loss_sum.item()
        n_tokens += out.n_tokens.item()
    correct = 0
    for batch in batches:
        logits = interface(batch).eval_logits.masked_fill(~batch.eval_candidates, float("-inf"))
        correct += int(((logits.argmax(-1) == batch.eval_gold) & (batch.eval_pos >= 0)).sum())
    return loss_sum / n_tokens, correct


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines_per_split", type=int, default=512)
    parser.add_argument("--eval_batch_size", type=int, default=None, help="default: the run's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    extra = [] if args.eval_batch_size is None else ["--eval_batch_size", str(args.eval_batch_size)]
    run = paper_run(args.data_dir, args.device, *extra)
    batch_size = run.cfg.train.eval_batch_size
    splits = eval_sample(run, args.lines_per_split)
    every = [b for batches in splits.values() for b in batches]
    flops = sum(forward_flops(run.model, b.lengths) for b in every)
    n_lines, real = sum(len(b.lengths) for b in every), sum(int(b.lengths.sum()) for b in every)
    padded = sum(b.inputs.numel() for b in every)
    fused_times, two_pass_times, ratios, pass_ratios, mm_rates = [], [], [], [], []
    for _ in range(args.rounds):
        before = matmul_rate()
        start = time.perf_counter()
        for batches in splits.values():
            evaluate(run.objective, batches, args.device)
        fused_times.append(time.perf_counter() - start)
        # a pass takes seconds: bracket it, the machine is shared
        mm_rates.append((before + matmul_rate()) / 2)
        ratios.append(flops / fused_times[-1] / mm_rates[-1])
        start = time.perf_counter()
        for batches in splits.values():
            two_passes(run.objective, [b.to(args.device) for b in batches])
        two_pass_times.append(time.perf_counter() - start)
        pass_ratios.append(fused_times[-1] / two_pass_times[-1])
    fused, two = statistics.median(fused_times), statistics.median(two_pass_times)
    print(describe_machine(args.threads))
    print(f"{n_lines} lines of {', '.join(splits)} in {sum(map(len, splits.values()))} batches of "
          f"{batch_size}; {real} real tokens, {1 - real / padded:.1%} padding; "
          f"{flops / 1e12:.2f} TFLOP per pass")
    print(f"fused pass {fused:.2f} s = {flops / fused / 1e9:.1f} GFLOP/s; two passes {two:.2f} s; "
          + describe_rate(statistics.median(mm_rates)))
    print(f"evaluation FLOP rate / matmul rate: {statistics.median(ratios):.3f}; "
          f"fused pass time / two passes: {statistics.median(pass_ratios):.3f}")


if __name__ == "__main__":
    main()
