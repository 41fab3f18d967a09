"""Each CPU fast path of the LM against the plain code it stands in for: time of a training step
and of an evaluation pass of the paper configuration, plain ÷ fast, in alternating rounds in one
process.

    python bench/fast_paths.py --threads 1

The fast paths: dropout masks from 16 random bits per element (plain: `F.dropout`), the
written-out attention of CPU training (plain: `F.scaled_dot_product_attention` with `dropout_p`),
and running the position-wise layers on the real tokens only (plain: the padded batch,
`pack=False`). The plain code is swapped in here, one path at a time, by patching the method.

A round times, for each path, `--steps` training steps with the fast path and the same steps (the
sampler is rewound) with the plain code, then an evaluation pass of each over about
`--lines_per_split` lines of val and test; rounds alternate which variant goes first. A line per
path gives plain ÷ fast for the step and for evaluation (median over rounds): 1.25 means the fast
path saves 20% of the time. The last line lists the share each path saves and whether that meets
the bar a fast path is kept for: 10% of a step or of an evaluation pass.
"""
from __future__ import annotations

import contextlib
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


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=8, help="training steps per round and variant")
    parser.add_argument("--lines_per_split", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trainer = paper_trainer(args.data_dir, args.device)
    trainer.model.train()
    splits = eval_sample(trainer, args.lines_per_split)

    def steps():
        for _ in range(args.steps):
            trainer._train_step()

    def evaluation():
        for batches in splits.values():
            evaluate(trainer.interface, batches, args.device)

    ratios = {name: {"step": [], "evaluation": []} for name in PLAIN}
    for round_ in range(-1, args.rounds):  # round -1 warms up (allocator, optimizer state)
        for name, (owner, method, plain) in PLAIN.items():
            start = trainer.sampler.state_dict()
            times = {}
            for variant in (("fast", "plain") if round_ % 2 else ("plain", "fast")):
                trainer.sampler.load_state_dict(start)  # both variants train on the same batches
                with (mock.patch.object(owner, method, plain) if variant == "plain"
                      else contextlib.nullcontext()):
                    times[variant] = {"step": timed(steps) / args.steps,
                                      "evaluation": timed(evaluation)}
            if round_ >= 0:
                for kind in ratios[name]:
                    ratios[name][kind].append(times["plain"][kind] / times["fast"][kind])
    print(describe_machine(args.threads))
    n_lines = sum(len(b.lengths) for batches in splits.values() for b in batches)
    print(f"median of {args.rounds} rounds × {args.steps} steps per variant; evaluation: "
          f"{n_lines} lines of {', '.join(splits)}")
    saved = {}
    for name, kinds in ratios.items():
        medians = {kind: statistics.median(r) for kind, r in kinds.items()}
        saved[name] = {kind: 1 - 1 / m for kind, m in medians.items()}
        print(f"{name}: plain time / fast time: step {medians['step']:.3f}, "
              f"evaluation {medians['evaluation']:.3f}")
    print(f"share saved (step, evaluation), bar {BAR:.0%} of either: " + "; ".join(
        f"{name} {s['step']:.0%}, {s['evaluation']:.0%} "
        f"({'meets' if max(s.values()) >= BAR else 'below'})" for name, s in saved.items()))


if __name__ == "__main__":
    main()
