"""Generate the data files: `python -m data_utils.generate [--task question|tense|all] [--dataset NAME]`.

Only dataset folders that do not exist are written (each whole), so released or hand-made files in
--data_dir are never touched; every file of the datasets is then validated, user files included.
"""
from __future__ import annotations

import sys
import time

from data_utils.config import DataConfig
from data_utils.load import validate_dataset
from data_utils.registry import REGISTRY, ensure_generated
from util import Parser, run_command

TASK_DATASETS = {"question": ["question"], "tense": ["tense"], "all": ["question", "tense"]}


def main(argv: list[str] | None = None) -> int:
    """Generate (and then validate) datasets; a user error prints one line and exits with code 2."""
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=list(TASK_DATASETS), default="all",
                        help="standard datasets to generate (default: both)")
    parser.add_argument("--dataset", action="append", default=[],
                        help=f"also generate this variant (repeatable); one of: {', '.join(REGISTRY)}")
    parser.add_argument("--data_dir", default="data_utils", help="folder that receives the dataset folders")
    parser.add_argument("--data_seed", type=int, default=0, help="seed of the generated data (N > 0 adds _seed{N})")

    def command():
        args = parser.parse_args(argv)
        start = time.perf_counter()
        configs = [DataConfig(dataset=name, data_dir=args.data_dir, data_seed=args.data_seed)
                   for name in TASK_DATASETS[args.task] + args.dataset]
        for cfg in configs:  # all refusals before anything is generated
            cfg.check()
        for cfg in configs:
            ensure_generated(cfg.data_dir, cfg.dataset, cfg.data_seed)
            counts = validate_dataset(cfg)
            print(f"{cfg.dataset}: " + ", ".join(f"{split} {n}" for split, n in counts.items()))
        print(f"data in {args.data_dir} ready ({time.perf_counter() - start:.1f} s)")

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
