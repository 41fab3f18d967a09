"""The mean ablation of every head by `python -m analysis heads` in the paper configuration (fresh
weights) against a full evaluation of the same lines (losses and accuracy from one forward pass of
the whole line per batch, what training runs), measured in alternating rounds in one process.

    python bench/heads.py --threads 1 [--sentences 1000] [--rounds 2]

The lines are generalization lines of the QF test split, as the command samples them. The clean
pass (attention, decision states, mean head outputs, once per checkpoint) is timed too. The last
line is the ablation's time per head ÷ the full evaluation's time: how many forward passes' worth of
a full evaluation one head's ablation costs.
"""
from __future__ import annotations

import statistics
import time

import torch

from common import bench_parser, describe_machine, paper_run

from analysis import heads  # noqa: E402  (common puts the repository on the path)
from evaluation import evaluate, make_eval_batches  # noqa: E402


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = paper_run(args.data_dir, args.device)
    model, vocab, batch_size = run.model.eval(), run.task.vocab, run.cfg.train.eval_batch_size
    examples = heads.generalization_lines(run.task.eval["test"], args.sentences)
    lines = heads.encode_lines(examples, vocab, "question").to(args.device)
    batches = make_eval_batches(examples, vocab, batch_size)
    clean = heads.read_clean(model, lines, batch_size)
    n_heads = len(heads.encoder_layers(model)) * heads.encoder_layers(model)[0].self_attn.n_heads

    methods = {"full evaluation": lambda: evaluate(run.objective, batches, args.device),
               "clean pass": lambda: heads.read_clean(model, lines, batch_size),
               "ablation of every head": lambda: heads.sweep(model, lines, clean.means, [], batch_size)}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, method in methods.items():
            start = time.perf_counter()
            method()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(describe_machine(args.threads))
    print(f"{len(examples)} generalization lines in batches of {batch_size}: {int(lines.lengths.sum())} tokens up to "
          f"the decision, {sum(int(b.lengths.sum()) for b in batches)} in the whole lines; {n_heads} heads")
    print("; ".join(f"{name} {t:.2f} s" for name, t in median.items()) + f" (median of {args.rounds} rounds)")
    print(f"clean pass / full evaluation: {median['clean pass'] / median['full evaluation']:.2f}")
    print(f"ablation per head / full evaluation: "
          f"{median['ablation of every head'] / n_heads / median['full evaluation']:.2f}")


if __name__ == "__main__":
    main()
