"""Training steps per second of the paper configuration on a CUDA GPU.

    python bench/gpu_steps.py

Steps are timed over a run of `--steps` with one synchronisation at the end, as the trainer runs
them (it reads logged values off the device only every 100 steps). On a machine without CUDA it
says so and exits 0. The last line is the rate.
"""
from __future__ import annotations

import time

import torch

from common import bench_parser, paper_trainer


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.set_defaults(device="cuda")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device on this machine: GPU steps/s not measured")
        return
    trainer = paper_trainer(args.data_dir, args.device)
    trainer.model.train()
    for _ in range(10):  # warm-up: kernels, allocator, optimizer state
        trainer._train_step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer._train_step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    print(f"device {torch.cuda.get_device_name()}; {args.steps} steps in {elapsed:.2f} s")
    print(f"GPU training steps/s: {args.steps / elapsed:.1f}")


if __name__ == "__main__":
    main()
