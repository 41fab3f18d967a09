"""Small shared helpers: the one user-error type, the argument parser that raises it and the exit
code it becomes, atomic file writes."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from typing import IO, Callable, Iterator


class HierGenError(Exception):
    """An error the user can cause (bad flag, bad data line, bad checkpoint).

    The command line prints its message as one line on stderr and exits with code 2;
    any other exception is a bug.
    """


def run_command(command: Callable[[], None]) -> int:
    """The exit code of a command: 2 with one `error:` line for a user error, 1 with one line for a
    file that could not be written midway (disk full; what was written before it is whole), else 0."""
    try:
        command()
    except HierGenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.filename or 'an output'}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


class Parser(argparse.ArgumentParser):
    """argparse that raises HierGenError (one line, exit code 2) instead of printing its usage."""

    def error(self, message: str):
        raise HierGenError(message)


def check_folder_can_be_made(path: str, flag: str) -> None:
    """Refuse (HierGenError) a folder that cannot be created or written into, before anything runs:
    try making a folder in it or its nearest existing ancestor (permission bits alone say nothing
    to root or on read-only disks)."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise HierGenError(f"{flag} {path} cannot be created: {existing} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".hier_gen_probe", dir=existing))
    except OSError as e:
        raise HierGenError(f"{flag} {path} cannot be created: {e.strerror}") from None


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success flush, fsync and rename it over `path`.

    A crash at any moment leaves either the old file or the complete new one, never a half one.
    Leftover temporaries are named `.{name}.tmp*` so that readers can ignore them.
    """
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the file is the user's, as open() would make it
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


def remove_temporaries(directory: str) -> None:
    """Delete the leftovers of atomic writes that a crash interrupted."""
    for name in os.listdir(directory):
        if name.startswith(".") and ".tmp" in name:
            os.remove(os.path.join(directory, name))


def atomic_write_text(path: str, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class RunFailed(Exception):
    """A run that cannot go on (non-finite loss, disk full); its last checkpoint is kept. Exit 1."""


class Preempted(Exception):
    """A run stopped by SIGTERM/SIGUSR1 after saving a checkpoint; `--resume` continues it."""
