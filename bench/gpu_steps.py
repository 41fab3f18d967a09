"""Training steps per second of the paper configuration on a CUDA GPU: plain fp32, `--bf16`,
`--compile` and both.

    python bench/gpu_steps.py

Steps are timed over a run of `--steps` with one synchronisation at the end, as the run runs
them (it reads logged values off the device only every 100 steps). Each variant first runs
`--warmup` steps: kernels, allocator, optimizer state and, compiled, the graphs for the batch
shapes (the first two take minutes). On a machine without CUDA it says so and exits 0. The last
line holds the rates.
"""
from __future__ import annotations

import time

import torch

from common import bench_parser, paper_run

VARIANTS = {"fp32": [], "bf16": ["--bf16"], "compile": ["--compile"], "bf16+compile": ["--bf16", "--compile"]}


def steps_per_second(data_dir: str, device: str, flags: list[str], warmup: int, steps: int) -> float:
    run = paper_run(data_dir, device, *flags)
    for _ in range(warmup):
        run.train_step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        run.train_step()
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.set_defaults(device="cuda")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which of " + ", ".join(VARIANTS))
    args = parser.parse_args()
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"--variants: unknown {', '.join(sorted(unknown))}")
    if not torch.cuda.is_available():
        print("no CUDA device on this machine: GPU steps/s not measured")
        return
    rates = {}
    for name in args.variants.split(","):
        rates[name] = steps_per_second(args.data_dir, args.device, VARIANTS[name], args.warmup, args.steps)
        print(f"{name}: {rates[name]:.1f} steps/s", flush=True)
    print(f"device {torch.cuda.get_device_name()}; {args.steps} steps per variant")
    print("GPU training steps/s: " + ", ".join(f"{name} {rate:.1f}" for name, rate in rates.items()))


if __name__ == "__main__":
    main()
