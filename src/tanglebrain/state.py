"""The state directory (ledger, rotation counters): created private, by whoever comes first.

The ledger holds prompts and answers; several writers (the ledger, the rotation store)
may each be the first to need the directory, so they all create it here, ``0700``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

MODE = 0o700


def ensure_dir(path: Path) -> Path:
    """Create the directory ``path`` if it is missing, readable by its owner only.

    Missing parents are created with the default mode (they are shared places such as
    ``~/.local/share``). An existing directory is left as it is: its mode is the
    owner's choice (``$TANGLEBRAIN_HOME`` may point at a directory made on purpose).

    Args:
        path: the state directory.

    Returns:
        ``path``.

    Raises:
        OSError: the directory cannot be created.
    """
    if path.is_dir():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, MODE)
    except (FileExistsError, NotADirectoryError):
        if not path.is_dir():
            raise _in_the_way(path) from None
        return path  # another process made it first, through this function too
    os.chmod(path, MODE)  # exactly 0700, whatever the umask
    return path


def _in_the_way(path: Path) -> NotADirectoryError:
    """The error for a file where ``path`` or one of its parents should be a directory.

    The bare "File exists" would leave the user to guess which file is in the way.
    """
    culprit = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
    return NotADirectoryError(
        errno.ENOTDIR,
        f"{culprit} is a file, not a directory (point TANGLEBRAIN_HOME at a directory)",
    )
