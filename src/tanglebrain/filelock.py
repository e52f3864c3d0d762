"""An advisory lock held on a small file beside the data it guards, on POSIX and Windows.

Roster edits and the rotation counters are read-modify-write cycles shared by processes;
each takes this lock around its cycle. Closing the file descriptor releases the lock, so a
crashed holder never leaves it taken.

Why not the ``filelock`` package (installed with litellm): importing it takes ~56 ms here
(its reader-writer locks load ``sqlite3`` and more), and round-robin rotation takes this
lock on a one-shot run that should start in a fraction of that; ``flock``/``locking``
are all that is needed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _acquire(fd: int, shared: bool) -> None:
        # Windows has no shared advisory locks: readers take the exclusive one too.
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)

else:
    import fcntl

    def _acquire(fd: int, shared: bool) -> None:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)


@contextmanager
def locked(lock_file: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold the lock on ``lock_file`` (created 0600 if missing) for the ``with`` block.

    Args:
        lock_file: the lock's own file, e.g. ``roster.toml.lock``.
        shared: a reader's lock, which other readers may hold at the same time (POSIX).

    Raises:
        OSError: the lock file cannot be opened.
    """
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        _acquire(fd, shared)
        yield
    finally:
        os.close(fd)  # releases the lock
