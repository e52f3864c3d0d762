"""Writing a roster file safely: under its lock, atomically, keeping a backup.

An exclusive ``flock`` on the sidecar ``<name>.lock`` keeps two writers from losing one
change. A write goes to a temp file in the same directory, is fsynced and renamed over
the original, so a crash leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tanglebrain import filelock
from tanglebrain.errors import ConfigError
from tanglebrain.roster._discover import not_regular, packaged_path


def refuse_special(path: Path, shown: Path) -> None:
    """Refuse to write a roster over anything but a regular file (or nothing).

    Replacing ``/dev/null`` or a named pipe with a file would break whatever else uses
    it, and reading one for the backup may block forever. Checked before the lock, whose
    sidecar file would be created beside it.

    Raises:
        ConfigError: ``path`` is a directory, a device, a pipe or a socket.
    """
    what = not_regular(path)
    if what is not None:
        raise ConfigError(f"is {what}", file=shown, fix="give the path of a file, e.g. roster.toml")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock on ``<name>.lock`` beside ``path``.

    Raises:
        ConfigError: the lock file cannot be opened.
    """
    lock = path.with_name(path.name + ".lock")
    try:
        with filelock.locked(lock):
            yield
    except OSError as exc:
        raise ConfigError(f"cannot lock roster: {exc.strerror}", file=lock) from None


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``.

    Raises:
        ConfigError: the file cannot be written (nothing is left half-written).
    """
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", file=path) from None
    finally:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a crash
    finally:
        os.close(fd)


def write_starter(dest: Path, *, force: bool) -> Path | None:
    """Copy the packaged roster (comments and all) to ``dest``; return the backup, if any.

    Raises:
        ConfigError: ``dest`` exists and ``force`` is False, or it cannot be written.
    """
    starter = packaged_path().read_bytes()
    refuse_special(dest, dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create directory: {exc.strerror}", file=dest.parent) from None
    real = dest.resolve()
    with locked(real):
        if not real.exists():
            umask = os.umask(0)
            os.umask(umask)
            write_atomic(real, starter, 0o666 & ~umask)
            return None
        if not force:
            raise ConfigError(
                "roster already exists; not overwritten",
                file=dest,
                fix="pass --force to replace it; the old file is kept as .bak",
            )
        backup = real.with_name(real.name + ".bak")
        mode = stat.S_IMODE(real.stat().st_mode)
        write_atomic(backup, real.read_bytes(), mode)
        write_atomic(real, starter, mode)
        return backup
