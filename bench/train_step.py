"""Training step of the paper configuration (6 × 512, 8 heads, batch 8, QF): real-token FLOP rate
÷ fp32 torch.matmul rate, measured in alternating rounds in one process.

    python bench/train_step.py --threads 1

The last line is the ratio (median over rounds: each round times `--steps` steps between two
timings of the matmul). Before it, profiled steps say where a step's time goes: the matrix
products, AdamW, and the other operators (dropout, LayerNorm, softmax, copies, autograd).
"""
from __future__ import annotations

import statistics
import time

import torch

from common import (bench_parser, describe_machine, describe_rate, forward_flops, matmul_rate,
                    paper_run)


def peek_lengths(run) -> torch.Tensor:
    """Real lengths of the batch the run's next step draws (the sampler is rewound after)."""
    state = run.sampler.state_dict()
    indices = run.sampler.next_indices()
    run.sampler.load_state_dict(state)
    return torch.tensor([len(run.train_seqs[i].tokens) - 1 for i in indices])


def linear_products_rate(model: torch.nn.Module, n_tokens: int, repeats: int = 3) -> float:
    """FLOP/s of the step's linear-layer products alone (forward, dx and dW of every Linear and of
    the output map, at n_tokens rows), run back to back: what the step could reach if nothing
    else cost time."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if model.tied_embedding:
        weights.append(model.input_embedding.weight)  # the output map's
    operands = [(torch.randn(n_tokens, w.shape[1]), torch.randn(n_tokens, w.shape[0]), w.detach())
                for w in weights]

    def run():
        for x, g, w in operands:
            x @ w.t(), g @ w, g.t() @ x
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    flops = sum(3 * 2 * n_tokens * w.numel() for _, _, w in operands)
    return repeats * flops / (time.perf_counter() - start)


# Operators by kind of work; the profiler's self time of everything else is "other".
WORK_KINDS = {"linear products": ("aten::mm", "aten::addmm"),
              "attention products": ("aten::bmm",),
              "AdamW": ("aten::_fused_adamw_",)}


def step_shares(run, steps: int) -> dict[str, float]:
    """Each kind of work's share of the time of `steps` training steps, from the profiler's
    per-operator self times (the profiler's own per-operator cost lands mostly in "other")."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            run.train_step()
    seconds = dict.fromkeys([*WORK_KINDS, "other"], 0.0)
    for event in prof.key_averages():
        kind = next((k for k, names in WORK_KINDS.items() if event.key in names), "other")
        seconds[kind] += event.self_cpu_time_total
    total = sum(seconds.values())
    return {kind: t / total for kind, t in seconds.items()}


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = paper_run(args.data_dir, args.device)
    for _ in range(3):  # warm-up: allocator, optimizer state
        run.train_step()
    rates, mm_rates, step_times, product_rates, shares = [], [], [], [], []
    for _ in range(args.rounds):
        before = matmul_rate()
        flops, elapsed, n_tokens = 0.0, 0.0, 0
        for _ in range(args.steps):
            lengths = peek_lengths(run)
            flops += 3 * forward_flops(run.model, lengths)
            n_tokens += int(lengths.sum())
            start = time.perf_counter()
            run.train_step()
            elapsed += time.perf_counter() - start
        product_rates.append(linear_products_rate(run.model, n_tokens // args.steps))
        shares.append(step_shares(run, args.steps))
        mm_rates.append((before + matmul_rate()) / 2)  # bracket: the machine is shared
        rates.append(flops / elapsed)
        step_times.append(elapsed / args.steps)
    print(describe_machine(args.threads))
    print(f"step time {statistics.median(step_times) * 1e3:.1f} ms (median of {args.rounds} rounds "
          f"× {args.steps} steps); real-token work {flops / args.steps / 1e9:.1f} GFLOP/step")
    print(f"training {statistics.median(rates) / 1e9:.1f} GFLOP/s; "
          + describe_rate(statistics.median(mm_rates)))
    ceiling = statistics.median(p / m for p, m in zip(product_rates, mm_rates))
    print(f"the step's linear-layer products alone: {statistics.median(product_rates) / 1e9:.1f} "
          f"GFLOP/s = {ceiling:.3f} of the matmul rate (the ceiling for the ratio below)")
    share = {kind: statistics.median(s[kind] for s in shares) for kind in shares[0]}
    print("a step's time (profiled steps, median share): "
          + ", ".join(f"{kind} {s:.0%}" for kind, s in share.items()))
    ratio = statistics.median(r / m for r, m in zip(rates, mm_rates))
    print(f"the ratio if the other operators took no time: {ratio / (1 - share['other']):.3f}")
    print(f"train step real-token FLOP rate / matmul rate: {ratio:.3f}")


if __name__ == "__main__":
    main()
