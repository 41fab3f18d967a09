"""Train (or, with --max_train_steps 0, evaluate) a transformer LM on QF or TI data.

    python train_transformers.py --dataset question --callback --tied-embedding ...

Flags: see `--help` and README.md. Exit codes: 0 done; 1 the run failed (non-finite loss, a file
that cannot be written; its last checkpoint is kept); 2 bad flags, data or checkpoint (one line,
nothing written); 75 stopped by SIGTERM/SIGUSR1 after a checkpoint (`--resume` continues; under
SLURM the job has requeued itself).
"""
from __future__ import annotations

import signal
import sys

from config import parse_config
from util import HierGenError, Preempted, RunFailed

EXIT_FAILED, EXIT_USAGE, EXIT_PREEMPTED = 1, 2, 75


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(argv)
        from trainer import Trainer  # imported after validation: keeps `--help` and bad flags fast

        Trainer(cfg).run()
    except HierGenError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except Preempted as e:
        print(str(e), file=sys.stderr)
        return EXIT_PREEMPTED
    return 0


if __name__ == "__main__":
    code = main()
    # Everything is saved: a stop signal during interpreter shutdown has nothing left to do.
    for stop_signal in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(stop_signal, signal.SIG_IGN)
    sys.exit(code)
