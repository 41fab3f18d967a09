"""The LM's CPU fast path, packing (position-wise layers on the real tokens only), against the
padded path it stands in for (`pack=False`): time of a training step and of an evaluation pass of
the paper configuration, padded ÷ packed, in alternating rounds in one process.

    python bench/fast_paths.py --threads 1

A fast path is kept while it saves 10% of a step or of an evaluation pass; this script measures
each one left. A round times `--steps` training steps and an evaluation pass over about
`--lines_per_split` lines of val and test, both ways: each step (on one batch, the sampler being
rewound) and each evaluation batch runs packed and padded back to back, in alternating order, so
that a change of load on a shared machine falls on both alike. The packing line gives padded
time ÷ packed time for the step and for the evaluation pass (median over rounds, and their
range): 1.25 means packing saves 20% of the time. The last line gives the share of a step and of
an evaluation pass packing saves, and whether that meets the 10% bar.
"""
from __future__ import annotations

import contextlib
import functools
import statistics
import time
from unittest import mock

import torch

from common import bench_parser, describe_machine, eval_sample, paper_run

from evaluation import evaluate  # noqa: E402  (common puts the repository on the path)
from models.transformer_lm import TransformerLM  # noqa: E402

BAR = 0.10  # the share of a step or of an evaluation pass a fast path must save


def padded():
    """The LM's forward on the padded batch, wherever it is called from, while this is entered."""
    return mock.patch.object(TransformerLM, "forward",
                             functools.partialmethod(TransformerLM.forward, pack=False))


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def padded_over_packed(runs) -> float:
    """Total time of the runs padded ÷ packed; each run goes both ways, back to back, in
    alternating order."""
    total = {"packed": 0.0, "padded": 0.0}
    for i, run in enumerate(runs):
        for variant in ("packed", "padded") if i % 2 else ("padded", "packed"):
            with padded() if variant == "padded" else contextlib.nullcontext():
                total[variant] += timed(run)
    return total["padded"] / total["packed"]


def training_steps(run, n: int):
    """n training steps, each to be run twice on one batch (the sampler is rewound)."""
    for _ in range(n):
        # taken as the pair starts: padded_over_packed runs the step before drawing the next one
        state = run.sampler.state_dict()

        def step():
            run.sampler.load_state_dict(state)
            run.train_step()
        yield step


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=16, help="training steps per round and variant")
    parser.add_argument("--lines_per_split", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = paper_run(args.data_dir, args.device)
    batches = [b for split in eval_sample(run, args.lines_per_split).values() for b in split]
    evaluations = [functools.partial(evaluate, run.objective, [b], args.device)
                   for b in batches]
    ratios = {"step": [], "evaluation": []}
    for round_ in range(-1, args.rounds):  # round -1 warms up (allocator, optimizer state)
        step = padded_over_packed(training_steps(run, args.steps))
        evaluation = padded_over_packed(evaluations)
        if round_ >= 0:
            ratios["step"].append(step)
            ratios["evaluation"].append(evaluation)
    print(describe_machine(args.threads))
    print(f"{args.rounds} rounds of {args.steps} training steps and {len(batches)} batches of val "
          f"and test ({sum(len(b.lengths) for b in batches)} lines), each way")
    print("packing: padded time / packed time (median over rounds; range): " + ", ".join(
        f"{kind} {statistics.median(r):.3f} ({min(r):.3f}–{max(r):.3f})"
        for kind, r in ratios.items()))
    saved = {kind: 1 - 1 / statistics.median(r) for kind, r in ratios.items()}
    print(f"packing saves {saved['step']:.0%} of a step and {saved['evaluation']:.0%} of an "
          f"evaluation pass: {'meets' if max(saved.values()) >= BAR else 'below'} the bar "
          f"({BAR:.0%} of either)")


if __name__ == "__main__":
    main()
