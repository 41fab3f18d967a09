"""Each CPU fast path of the LM against the plain code it stands in for: time of a training step
and of an evaluation pass of the paper configuration, plain ÷ fast, in alternating rounds in one
process.

    python bench/fast_paths.py --threads 1

The fast paths: dropout masks from 16 random bits per element (plain: `F.dropout`), the
written-out attention of CPU training (plain: `F.scaled_dot_product_attention` with `dropout_p`),
and running the position-wise layers on the real tokens only (plain: the padded batch,
`pack=False`). The plain code is swapped in here, one path at a time, by patching the method.

A round times, for each path, `--steps` training steps and an evaluation pass over about
`--lines_per_split` lines of val and test, both ways: each step (on one batch, the sampler being
rewound) and each evaluation batch runs with the fast path and with the plain code back to back,
in alternating order. A line per path gives plain time ÷ fast time for the step and for the
evaluation pass (median over rounds, and their range): 1.25 means the fast path saves 20% of the
time. Dropout and attention run the same code in evaluation either way, so their evaluation
ratios show the noise. The last line gives the share of a step and of an evaluation pass each
path saves, and whether that meets the bar a fast path is kept for: 10% of either.
"""
from __future__ import annotations

import contextlib
import functools
import statistics
import time
from unittest import mock

import torch
import torch.nn.functional as F

from common import bench_parser, describe_machine, eval_sample, paper_trainer

from evaluation import evaluate  # noqa: E402  (common puts the repository on the path)
from layers import Dropout, MultiHeadAttention  # noqa: E402
from models.transformer_lm import TransformerLM  # noqa: E402

BAR = 0.10  # the share of a step or of an evaluation pass a fast path must save


def plain_dropout(self, x: torch.Tensor) -> torch.Tensor:
    return F.dropout(x, self.p, self.training)


def sdpa_attend(self, q, k, v, attn_mask):
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=self.dropout.p if self.training else 0.0)


def padded_forward(self, inputs, lengths=None, pack=None):
    return packed_forward(self, inputs, lengths, pack=False)


packed_forward = TransformerLM.forward
# Each fast path's plain code: (class, method, replacement).
PLAIN = {"dropout masks": (Dropout, "forward", plain_dropout),
         "written-out attention": (MultiHeadAttention, "_attend", sdpa_attend),
         "packing": (TransformerLM, "forward", padded_forward)}


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def plain_over_fast(plain_code: tuple, runs) -> float:
    """Total time of the runs with the plain code ÷ with the fast path. Each run goes both ways
    back to back, in alternating order, so that a change of load on the shared machine falls on
    both alike."""
    total = {"fast": 0.0, "plain": 0.0}
    for i, run in enumerate(runs):
        for variant in ("fast", "plain") if i % 2 else ("plain", "fast"):
            with (mock.patch.object(*plain_code) if variant == "plain"
                  else contextlib.nullcontext()):
                total[variant] += timed(run)
    return total["plain"] / total["fast"]


def training_steps(trainer, n: int):
    """n training steps, each to be run twice on one batch (the sampler is rewound)."""
    for _ in range(n):
        # taken as the pair starts: plain_over_fast runs the step before drawing the next one
        state = trainer.sampler.state_dict()

        def step():
            trainer.sampler.load_state_dict(state)
            trainer._train_step()
        yield step


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=8, help="training steps per round and variant")
    parser.add_argument("--lines_per_split", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trainer = paper_trainer(args.data_dir, args.device)
    trainer.model.train()
    batches = [b for split in eval_sample(trainer, args.lines_per_split).values() for b in split]
    eval_batches = [functools.partial(evaluate, trainer.interface, [b], args.device)
                    for b in batches]
    ratios = {name: {"step": [], "evaluation": []} for name in PLAIN}
    for round_ in range(-1, args.rounds):  # round -1 warms up (allocator, optimizer state)
        for name, plain_code in PLAIN.items():
            step = plain_over_fast(plain_code, training_steps(trainer, args.steps))
            evaluation = plain_over_fast(plain_code, eval_batches)
            if round_ >= 0:
                ratios[name]["step"].append(step)
                ratios[name]["evaluation"].append(evaluation)
    print(describe_machine(args.threads))
    print(f"{args.rounds} rounds of {args.steps} training steps and {len(batches)} batches of val "
          f"and test ({sum(len(b.lengths) for b in batches)} lines), each way")
    saved = {}
    for name, kinds in ratios.items():
        print(f"{name}: plain time / fast time (median over rounds; range): " + ", ".join(
            f"{kind} {statistics.median(r):.3f} ({min(r):.3f}–{max(r):.3f})"
            for kind, r in kinds.items()))
        saved[name] = {kind: 1 - 1 / statistics.median(r) for kind, r in kinds.items()}
    print(f"share saved (step, evaluation), bar {BAR:.0%} of either: " + "; ".join(
        f"{name} {s['step']:.0%}, {s['evaluation']:.0%} "
        f"({'meets' if max(s.values()) >= BAR else 'below'})" for name, s in saved.items()))


if __name__ == "__main__":
    main()
