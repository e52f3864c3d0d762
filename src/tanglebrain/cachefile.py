"""Small JSON files under ``$XDG_CACHE_HOME/tanglebrain`` (default ``~/.cache``).

What they hold can always be worked out again: a file that is missing, unreadable or
odd reads as None, and a write that fails is dropped. Writes replace the file
atomically, so concurrent processes never see half of one (the last writer wins).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path


def path(name: str) -> Path:
    """Where the cache file ``name`` lives."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tanglebrain" / name


def read(name: str) -> object:
    """The JSON value in the cache file ``name``, or None."""
    try:
        return json.loads(path(name).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def write(name: str, value: object) -> None:
    """Replace the cache file ``name`` with ``value`` as JSON (failures are ignored)."""
    target = path(name)
    # Per process and thread: a recorder thread may write meanwhile.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(value), "utf-8")
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
