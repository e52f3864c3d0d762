"""Round-robin counters among equally good orchestrators, persisted across processes."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from tanglebrain import filelock
from tanglebrain.state import ensure_dir


class RotationStore:
    """Round-robin counters in ``state_dir/rotation.json``, safe across processes.

    Reads take a shared lock, advances an exclusive one; the counter moves only when
    a run succeeded, so a failing orchestrator does not skip its turn-mates.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "rotation.json"

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[dict[str, int]]:
        ensure_dir(self.path.parent)
        with filelock.locked(self.path.with_suffix(".lock"), shared=not exclusive):
            try:
                data = json.loads(self.path.read_text())
                counters = {str(k): int(v) for k, v in data.items()}
            except (OSError, ValueError, AttributeError):
                counters = {}
            yield counters
            if exclusive:
                tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(counters, sort_keys=True))
                os.replace(tmp, self.path)

    def offset(self, key: str, size: int) -> int:
        """Current offset for the group ``key`` of ``size`` members."""
        try:
            with self._locked(exclusive=False) as counters:
                return counters.get(key, 0) % max(size, 1)
        except OSError:
            return 0

    def advance(self, key: str) -> None:
        """Move the group's counter on by one (after a successful run)."""
        try:
            with self._locked(exclusive=True) as counters:
                counters[key] = counters.get(key, 0) + 1
        except OSError:
            pass  # rotation is a nicety; an unwritable state dir must not fail the run
