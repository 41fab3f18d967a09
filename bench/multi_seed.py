"""Multi-seed throughput: seed-steps/s of S seeds trained at once (`--seeds`) ÷ one seed alone,
measured in alternating rounds in one process.

    python bench/multi_seed.py --seeds 4 --threads 1                  # paper configuration
    python bench/multi_seed.py --seeds 16 --device cuda               # the issue's GPU target: ≥ 10
    python bench/multi_seed.py --seeds 16 --device cuda --model="--bf16"  # both sides under bf16

The last line is the ratio (median over rounds).
"""
from __future__ import annotations

import shlex
import statistics
import time

import torch

from common import PAPER_FLAGS, bench_parser, describe_machine, paper_run
from config import parse_config
from trainer import Trainer


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="number of seeds trained at once")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="training steps per round")
    parser.add_argument("--model", default="",
                        help='extra training flags, e.g. --model="--encoder_n_layers 2 --vec_dim 128"')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_flags = shlex.split(args.model)
    single = paper_run(args.data_dir, args.device, *model_flags)
    seeds = ",".join(str(42 + s) for s in range(args.seeds))
    multi = Trainer(parse_config([*PAPER_FLAGS, "--data_dir", args.data_dir, "--device", args.device,
                                           "--seeds", seeds, *model_flags], environ={}))
    for _ in range(2):  # warm-up: allocator, optimizer state
        single.train_step()
        multi.train_step()
    single_rates, multi_rates = [], []
    for _ in range(args.rounds):
        single_rates.append(args.steps / _timed(single.train_step, args.steps, args.device))
        multi_rates.append(args.seeds * args.steps / _timed(multi.train_step, args.steps, args.device))
    print(describe_machine(args.threads))
    print(f"one seed: {statistics.median(single_rates):.2f} steps/s; {args.seeds} seeds at once: "
          f"{statistics.median(multi_rates):.2f} seed-steps/s")
    ratios = [m / s for m, s in zip(multi_rates, single_rates)]
    print(f"multi-seed throughput ({args.seeds} seeds) / one seed: {statistics.median(ratios):.2f}")


def _timed(step, n: int, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
