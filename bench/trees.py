"""Context-free span vectors of `python -m analysis trees` in the paper configuration (fresh
weights): one masked sequence per span (the definition read literally, n(n+1)/2 sequences per
sentence, a sentence's spans batched together) against the causal shortcut (one masked sequence
per start position, n per sentence, sentences of one length batched together as the command runs
them), measured in alternating rounds in one process.

    python bench/trees.py --threads 1 [--sentences 32] [--rounds 3]

The sentences are declaratives of QF training questions, as the command samples them. The line
before the last gives the shortcut with one sentence per pass too, which separates what the
shortcut saves from what batching sentences adds. The last line is the naive time ÷ the shortcut's
time: how many times faster the command is than the per-span computation.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from common import bench_parser, describe_machine, paper_run

from analysis import trees  # noqa: E402  (common puts the repository on the path)


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = paper_run(args.data_dir, args.device)
    model, vocab = run.model.eval(), run.task.vocab
    sentences = [vocab.ids(words) for words in trees.training_sentences(run.cfg.data, args.sentences, 42)]

    def naive():
        return [trees.naive_similarity_chart(model, words, vocab.sos) for words in sentences]

    def sentence_by_sentence():
        return trees.similarity_charts(model, sentences, vocab.sos, batch_tokens=1)

    def shortcut():
        return trees.similarity_charts(model, sentences, vocab.sos)

    methods = {"naive": naive, "shortcut, one sentence a pass": sentence_by_sentence, "shortcut": shortcut}
    times: dict[str, list[float]] = {name: [] for name in methods}
    charts = {}
    for _ in range(args.rounds):
        for name, method in methods.items():
            start = time.perf_counter()
            charts[name] = method()
            times[name].append(time.perf_counter() - start)
    worst = max(np.abs(a - b).max() for a, b in zip(charts["naive"], charts["shortcut"]))
    median = {name: statistics.median(t) for name, t in times.items()}
    lengths = np.array([len(words) for words in sentences])
    print(describe_machine(args.threads))
    print(f"{len(sentences)} sentences of {lengths.min()}-{lengths.max()} words; sequences per pass over them: "
          f"naive {int((lengths * (lengths + 1) // 2).sum())}, shortcut {int(lengths.sum())}; "
          f"largest |s difference| {worst:.1e}")
    print("; ".join(f"{name} {t:.2f} s" for name, t in median.items()) + f" (median of {args.rounds} rounds)")
    print(f"naive time / shortcut one sentence a pass: {median['naive'] / median['shortcut, one sentence a pass']:.1f}")
    print(f"naive time / shortcut time: {median['naive'] / median['shortcut']:.1f}")


if __name__ == "__main__":
    main()
