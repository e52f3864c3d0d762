"""The hard per-run spending cap.

Before every call its worst case is reserved (prompt tokens x input price plus
``max_tokens`` x output price); a call whose reservation would take spent + reserved
over the cap is refused. After the call the reservation is settled with the real
cost. ``reserve`` and ``settle`` never await, so on one event loop the check and the
booking are atomic and the cap holds under any amount of concurrent fan-out.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        self.unknown_spend = False

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

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        """Release the reservation and book what the call really cost.

        An unknown actual cost books the whole reservation: the cap must still hold.
        """
        if reservation.settled:
            return
        reservation.settled = True
        if self.cap is None:
            if actual_usd is None:
                self.unknown_spend = True
            else:
                self.spent += actual_usd
            return
        self.reserved -= reservation.amount
        cost = reservation.amount if actual_usd is None else actual_usd
        self.spent += cost

    @property
    def remaining(self) -> float | None:
        """Money not yet spent or reserved, or None without a cap."""
        if self.cap is None:
            return None
        return max(0.0, self.cap - self.spent - self.reserved)
