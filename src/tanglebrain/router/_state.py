"""What the router knows about the run (or server) so far: load and circuit breakers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tanglebrain.router._learned import Learned


@dataclass
class Breakers:
    """A circuit breaker per backend: repeated failures stop further calls to it.

    After ``threshold`` failures in a row a backend's circuit opens: calls that have
    another candidate skip it. Once ``probe_after_s`` has passed, one call at a time may
    probe it (half-open); a success closes the circuit, a failure opens it again. A run
    keeps its circuits open to its end (the default); a server shares one ``Breakers``
    across its runs with a finite ``probe_after_s``.
    """

    threshold: int = 2
    probe_after_s: float = math.inf
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, int] = field(default_factory=dict)
    _opened: dict[str, float] = field(default_factory=dict)
    _probing: set[str] = field(default_factory=set)

    def is_open(self, backend_id: str) -> bool:
        """Whether calls with an alternative should skip ``backend_id`` now."""
        opened = self._opened.get(backend_id)
        if opened is None:
            return False
        return backend_id in self._probing or self.clock() - opened < self.probe_after_s

    def admit(self, backend_id: str) -> bool:
        """Whether a call may go to ``backend_id``; a half-open circuit admits one probe."""
        if self.is_open(backend_id):
            return False
        if backend_id in self._opened:
            self._probing.add(backend_id)
        return True

    def record(self, backend_id: str, ok: bool) -> None:
        """Book the outcome of a call to ``backend_id``."""
        self._probing.discard(backend_id)
        if ok:
            self._failures.pop(backend_id, None)
            self._opened.pop(backend_id, None)
            return
        failures = self._failures[backend_id] = self._failures.get(backend_id, 0) + 1
        if failures >= self.threshold:
            self._opened[backend_id] = self.clock()


@dataclass
class LoadState:
    """What the router needs to know about the run so far."""

    in_flight: dict[str, int] = field(default_factory=dict)
    breakers: Breakers = field(default_factory=Breakers)
    # The ledger's evidence when the roster routes sub-tasks by it (routing = "learned").
    learned: Learned | None = None

    def cooling(self, backend_id: str) -> bool:
        """Whether this backend failed often enough to go last (its circuit is open)."""
        return self.breakers.is_open(backend_id)
