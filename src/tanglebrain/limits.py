"""Concurrency limits: one slot limiter per backend, and the circuit breakers beside them.

A run makes its own ``Limits``; a long-lived front door (``serve``, ``mcp``) shares one
across its runs. ``Slot`` takes a limiter's slot the cheap way.
"""

from __future__ import annotations

import math

import anyio

from tanglebrain.roster import Backend
from tanglebrain.router import Breakers


class Limits:
    """One ``CapacityLimiter`` per backend (its ``max_concurrency``), and the circuit breakers.

    A run makes its own; a long-lived front door (``serve``, ``mcp``) shares one across
    its runs, so that a backend's limit holds for the whole process and a dead backend
    stays skipped until a probe finds it healthy again (``probe_after_s``).
    """

    def __init__(self, probe_after_s: float = math.inf) -> None:
        self._by_id: dict[str, anyio.CapacityLimiter] = {}
        self.breakers = Breakers(probe_after_s=probe_after_s)

    def of(self, backend: Backend) -> anyio.CapacityLimiter:
        """The limiter of ``backend``, created on first use."""
        lim = self._by_id.get(backend.id)
        if lim is None or lim.total_tokens != backend.max_concurrency:
            lim = self._by_id[backend.id] = anyio.CapacityLimiter(backend.max_concurrency)
        return lim


class Slot:
    """``async with`` a backend's limiter, taking a free slot without a trip to the loop.

    ``CapacityLimiter``'s own ``async with`` yields to the event loop twice even when a
    slot is free; a fan-out takes hundreds of slots at once, and the call right after
    yields anyway.
    """

    __slots__ = ("_limiter",)

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self._limiter = limiter

    async def __aenter__(self) -> None:
        try:
            self._limiter.acquire_nowait()
        except anyio.WouldBlock:
            await self._limiter.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._limiter.release()
