"""Per-run state shared by the orchestrator loop and delegation.

``RunContext.call`` is the one door to a model inside a run: it reserves budget,
holds the backend's concurrency slot, calls ``llm.complete`` and settles the cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from tanglebrain import llm
from tanglebrain.budget import Budget
from tanglebrain.errors import BackendError, ConfigError
from tanglebrain.roster import Backend, Roster
from tanglebrain.router import LoadState
from tanglebrain.trace import Call, Run

# Output tokens reserved per call under a budget (and sent as max_tokens, so the
# reservation is a true upper bound): at most BUDGET_MAX_TOKENS, fewer when the money
# left cannot pay for that many, but never fewer than BUDGET_MIN_TOKENS.
BUDGET_MAX_TOKENS = 4096
BUDGET_MIN_TOKENS = 256


@dataclass(frozen=True)
class Attachment:
    """A bulky input passed by reference (piped stdin is ``stdin``)."""

    name: str
    text: str

    @property
    def size(self) -> int:
        """Size in bytes (UTF-8)."""
        return len(self.text.encode())

    @property
    def lines(self) -> int:
        """Number of lines."""
        return self.text.count("\n") + (1 if self.text and not self.text.endswith("\n") else 0)

    def block(self) -> str:
        """The full text between clear delimiters, as a delegate receives it."""
        return (
            f"<<<attachment {self.name} ({self.size} bytes, {self.lines} lines)>>>\n"
            f"{self.text.rstrip(chr(10))}\n<<<end attachment {self.name}>>>"
        )


def with_attachments(prompt: str, attachments: Sequence[Attachment]) -> str:
    """``prompt`` followed by each attachment's full text in delimited blocks."""
    if not attachments:
        return prompt
    return prompt + "\n\n" + "\n\n".join(a.block() for a in attachments)


def estimate_tokens(text: str) -> int:
    """A cheap, model-agnostic token estimate (4 characters a token)."""
    return math.ceil(len(text) / 4)


class Limits:
    """One ``CapacityLimiter`` per backend (its ``max_concurrency``).

    A run makes its own; a long-lived front door (``serve``, ``mcp``) shares one across
    its runs, so that a backend's limit holds for the whole process.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, anyio.CapacityLimiter] = {}

    def of(self, backend: Backend) -> anyio.CapacityLimiter:
        """The limiter of ``backend``, created on first use."""
        lim = self._by_id.get(backend.id)
        if lim is None or lim.total_tokens != backend.max_concurrency:
            lim = self._by_id[backend.id] = anyio.CapacityLimiter(backend.max_concurrency)
        return lim


@dataclass
class RunContext:
    """Everything a run's calls share."""

    roster: Roster
    env: Mapping[str, str]
    run: Run
    budget: Budget
    retry: llm.RetryPolicy
    timeout: float
    attachments: dict[str, Attachment] = field(default_factory=dict)
    max_subtasks: int = 32
    subtasks_used: int = 0
    load: LoadState = field(default_factory=LoadState)
    limits: Limits = field(default_factory=Limits)

    def limiter(self, backend: Backend) -> anyio.CapacityLimiter:
        """The backend's ``max_concurrency`` slots, shared by every call of the run."""
        return self.limits.of(backend)

    def usable(self) -> list[Backend]:
        """Enabled backends whose API key (if they need one) is set: the real menu."""
        return [b for b in self.roster.enabled() if b.key_status(self.env) != "missing"]

    def window_of(self, backend: Backend) -> int | None:
        """Context window of ``backend`` (roster, else litellm, else unknown)."""
        return llm.context_window(backend)

    def _worst_case(
        self,
        backend: Backend,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> tuple[int | None, float | None]:
        """(max_tokens to send, worst-case USD) of a call; (None, None) without a budget."""
        if not self.budget.limited:
            return None, None
        price = llm.price_per_token(backend)
        if price is None:
            return BUDGET_MAX_TOKENS, None
        prompt = llm.count_tokens(backend, messages)
        if tools:
            prompt += estimate_tokens(str(tools))
        # 10 % headroom: providers' tokenizers differ from litellm's counter.
        prompt_usd = math.ceil(prompt * 1.1 + 16) * price[0]
        max_tokens = BUDGET_MAX_TOKENS
        left = self.budget.remaining
        if price[1] > 0 and left is not None:
            affordable = int((left - prompt_usd) / price[1])
            max_tokens = max(BUDGET_MIN_TOKENS, min(BUDGET_MAX_TOKENS, affordable))
        return max_tokens, prompt_usd + max_tokens * price[1]

    async def call(
        self,
        backend: Backend,
        messages: Sequence[dict[str, Any]],
        call: Call,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> llm.Reply:
        """Call ``backend`` under the run's budget, concurrency limits and trace.

        Raises:
            BudgetExceeded: the call's worst case does not fit in the budget.
            BackendError: the backend failed after its retries.
        """
        max_tokens, worst = self._worst_case(backend, messages, tools)
        reservation = await self.budget.acquire(backend.id, worst)
        self.load.in_flight[backend.id] = self.load.in_flight.get(backend.id, 0) + 1
        # A failure without an HTTP status (timeout, cut stream) may still have been billed:
        # under a cap it books its whole reservation (cost unknown), an HTTP error books 0.
        actual: float | None = None
        try:
            async with self.limiter(backend):
                reply = await llm.complete(
                    backend,
                    messages,
                    call=call,
                    env=self.env,
                    timeout=self.timeout,
                    retry=self.retry,
                    tools=tools,
                    on_text=on_text,
                    max_tokens=max_tokens,
                    on_attempt=self.run.changed,
                )
            actual = reply.cost_usd
            if reply.finish_reason == "length":
                self.run.warn(
                    f"{backend.id}: the reply was cut at its token limit"
                    + (f" ({max_tokens}, set by the budget)" if max_tokens else "")
                )
            return reply
        except BackendError as exc:
            if exc.status is not None:
                actual = 0.0
            raise
        except ConfigError:  # e.g. the key variable is unset: nothing was sent
            actual = 0.0
            raise
        finally:
            self.load.in_flight[backend.id] -= 1
            self.budget.settle(reservation, actual)
