"""The state directory (ledger, rotation counters): created private, by whoever comes first.

The ledger holds prompts and answers; several writers (the ledger, the rotation store)
may each be the first to need the directory, so they all create it here, ``0700``.
"""

from __future__ import annotations

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
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return path  # another process made it first, through this function too
    os.chmod(path, MODE)  # exactly 0700, whatever the umask
    return path
