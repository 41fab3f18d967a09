"""Cost of logging the 14 weight statistics at each evaluation, in the paper configuration (6 × 512,
8 heads, batch 8, QF): time of one `weight_statistics` ÷ time of the `--eval_every` training steps
between two evaluations, measured in alternating rounds in one process.

    python bench/weight_stats.py --threads 1 [--eval_every 2000] [--device cuda]

The last line is that ratio (median over rounds; each round times `--steps` training steps and one
computation of the statistics). It leaves the evaluation itself out of the run's time, so it
overstates the share; training logs the statistics by default while it stays below 1%.
"""
from __future__ import annotations

import statistics
import time

import torch

from common import bench_parser, describe_machine, paper_run

from models.weight_statistics import weight_statistics  # noqa: E402  (common puts the repository on the path)


def timed(fn, device: torch.device) -> float:
    """Seconds `fn` takes, the device's queued work included."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    parser.add_argument("--eval_every", type=int, default=2000, help="training steps between evaluations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = paper_run(args.data_dir, args.device)
    for _ in range(3):  # warm-up: allocator, optimizer state, LAPACK workspaces
        run.train_step()
    weight_statistics(run.model)
    step_times, stats_times = [], []
    for _ in range(args.rounds):
        step_times.append(timed(lambda: [run.train_step() for _ in range(args.steps)], run.device) / args.steps)
        stats_times.append(timed(lambda: weight_statistics(run.model), run.device))
    print(describe_machine(args.threads))
    step, stats = statistics.median(step_times), statistics.median(stats_times)
    print(f"training step {step * 1e3:.1f} ms; weight statistics {stats * 1e3:.1f} ms "
          f"(medians of {args.rounds} rounds)")
    ratio = statistics.median(s / (args.eval_every * t) for s, t in zip(stats_times, step_times))
    print(f"weight statistics / {args.eval_every} training steps: {ratio:.5f}")


if __name__ == "__main__":
    main()
