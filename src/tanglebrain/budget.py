"""The hard per-run spending cap.

Before every call its worst case is reserved (prompt tokens x input price plus
``max_tokens`` x output price); a call whose reservation would take spent + reserved
over the cap is refused. After the call the reservation is settled with the real
cost. ``reserve`` and ``settle`` never await, so on one event loop the check and the
booking are atomic and the cap holds under any amount of concurrent fan-out.

How much of a prompt the provider will find in its prompt cache is known only from its
reply, so the reservation prices every prompt token at the input price (a cache read
costs at most that) and the settlement books the call's cache-aware cost
(``models.cost_of``): the money a cache hit saves is free again once the call settles.

Worst cases are pessimistic, so under a wide fan-out the reservations of calls in
flight can crowd out a call that the money actually spent would allow. ``acquire``
therefore waits for in-flight calls to settle before it gives up: a call is refused
only when even the settled spend leaves no room for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from tanglebrain.errors import BudgetExceeded


@dataclass(slots=True)
class Reservation:
    """Money held for one call until it is settled."""

    backend: str
    amount: float
    settled: bool = False


class Budget:
    """A run's spending ledger: ``spent`` is settled, ``reserved`` is in flight."""

    def __init__(self, cap_usd: float | None) -> None:
        self.cap = cap_usd
        self.spent = 0.0
        self.reserved = 0.0
        self._settled: anyio.Event | None = None  # created on first wait, inside the loop

    @property
    def limited(self) -> bool:
        """Whether there is a cap at all."""
        return self.cap is not None

    def reserve(self, backend: str, worst_case_usd: float | None) -> Reservation:
        """Hold ``worst_case_usd`` for a call to ``backend``.

        Raises:
            BudgetExceeded: the cap would be exceeded, or the price is unknown while a
                cap is set (fail closed).
        """
        if self.cap is None:
            return Reservation(backend, 0.0)
        if worst_case_usd is None:
            raise BudgetExceeded(
                self.cap,
                self.spent,
                None,
                backend,
                reason="its price is unknown; set price = { input = …, output = … } "
                "(USD per million tokens) for this backend in the roster",
            )
        if self.spent + self.reserved + worst_case_usd > self.cap + 1e-12:
            raise BudgetExceeded(self.cap, self.spent + self.reserved, worst_case_usd, backend)
        self.reserved += worst_case_usd
        return Reservation(backend, worst_case_usd)

    async def acquire(self, backend: str, worst_case_usd: float | None) -> Reservation:
        """Like ``reserve``, but waits while calls in flight may still free room.

        Raises:
            BudgetExceeded: when the settled spend alone leaves no room for this call.
        """
        while True:
            try:
                return self.reserve(backend, worst_case_usd)
            except BudgetExceeded:
                fits_spent = (
                    self.cap is not None
                    and worst_case_usd is not None
                    and self.spent + worst_case_usd <= self.cap + 1e-12
                )
                if not fits_spent or self.reserved <= 0:
                    raise
            if self._settled is None:
                self._settled = anyio.Event()
            await self._settled.wait()

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        """Release the reservation and book what the call really cost.

        An unknown actual cost books the whole reservation: the cap must still hold.
        """
        if reservation.settled:
            return
        reservation.settled = True
        if self.cap is None:
            if actual_usd is not None:
                self.spent += actual_usd
            return
        self.reserved -= reservation.amount
        cost = reservation.amount if actual_usd is None else actual_usd
        self.spent += cost
        # Wake every waiter once; each re-checks, and a fresh event serves the next round.
        if self._settled is not None:
            self._settled.set()
            self._settled = None

    @property
    def remaining(self) -> float | None:
        """Money not yet spent or reserved, or None without a cap."""
        if self.cap is None:
            return None
        return max(0.0, self.cap - self.spent - self.reserved)
