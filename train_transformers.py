"""Train (or, with --max_train_steps 0, evaluate) a transformer LM on QF or TI data.

    python train_transformers.py --dataset question --callback --tied-embedding ...

Flags: see `--help` and README.md. Errors the user can fix print one line and exit with code 2.
"""
from __future__ import annotations

import sys

from config import parse_config
from util import HierGenError

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(argv)
        from training_utils import Trainer  # after validation: keeps `--help` and bad flags fast

        Trainer(cfg).run()
    except HierGenError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
