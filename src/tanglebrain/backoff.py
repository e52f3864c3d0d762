"""Exponential backoff with jitter: how long to wait before trying again.

Used wherever tanglebrain retries on its own (a backend call, a busy ledger): the wait
doubles each time up to a cap, and a random share of it spreads retries that would
otherwise fire in lockstep.
"""

from __future__ import annotations


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): 50-100 % of the doubling.

    Args:
        attempt: how many attempts have failed so far (1 for the first).
        base: the wait after the first failure, before jitter.
        cap: the longest wait, before jitter.
    """
    import random  # not at import time: the hook path imports this module and needs no RNG

    delay = min(cap, base * 2.0 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)
