"""Training step of the paper configuration (6 × 512, 8 heads, batch 8, QF): real-token FLOP rate
÷ fp32 matmul rate (the faster of torch.matmul and oneDNN), measured in alternating rounds in one
process.

    python bench/train_step.py --threads 1

The last line is the ratio (median over rounds: each round times `--steps` steps between two
timings of the matmul).
"""
from __future__ import annotations

import statistics
import time

import torch

from common import (bench_parser, describe_machine, describe_rates, forward_flops, matmul_rates,
                    mean_rates, paper_trainer)


def peek_lengths(trainer) -> torch.Tensor:
    """Real lengths of the batch the trainer's next step draws (the sampler is rewound after)."""
    state = trainer.sampler.state_dict()
    indices = trainer.sampler.next_indices()
    trainer.sampler.load_state_dict(state)
    return torch.tensor([len(trainer.train_seqs[i].tokens) - 1 for i in indices])


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trainer = paper_trainer(args.data_dir, args.device)
    trainer.model.train()
    for _ in range(3):  # warm-up: allocator, optimizer state
        trainer._train_step()
    rates, mm_rates, step_times = [], [], []
    for _ in range(args.rounds):
        before = matmul_rates()
        flops, elapsed = 0.0, 0.0
        for _ in range(args.steps):
            flops += 3 * forward_flops(trainer.model, peek_lengths(trainer))
            start = time.perf_counter()
            trainer._train_step()
            elapsed += time.perf_counter() - start
        mm_rates.append(mean_rates(before, matmul_rates()))  # bracket: the machine is shared
        rates.append(flops / elapsed)
        step_times.append(elapsed / args.steps)
    print(describe_machine(args.threads))
    print(f"step time {statistics.median(step_times) * 1e3:.1f} ms (median of {args.rounds} rounds "
          f"× {args.steps} steps); real-token work {flops / args.steps / 1e9:.1f} GFLOP/step")
    print(f"training {statistics.median(rates) / 1e9:.1f} GFLOP/s; "
          + describe_rates({k: statistics.median(m[k] for m in mm_rates) for k in mm_rates[0]}))
    ratio = {k: statistics.median(r / m[k] for r, m in zip(rates, mm_rates)) for k in mm_rates[0]}
    print(f"train step real-token FLOP rate / torch.matmul rate: {ratio['torch.matmul']:.3f}")
    print("train step real-token FLOP rate / matmul rate (the faster kernel, round by round): "
          f"{statistics.median(r / max(m.values()) for r, m in zip(rates, mm_rates)):.3f}")

if __name__ == "__main__":
    main()
