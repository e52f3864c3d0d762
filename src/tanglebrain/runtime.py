"""Per-run state shared by the orchestrator loop and delegation.

``RunContext.call`` is the one door to a model inside a run: it reserves budget,
holds the backend's concurrency slot, calls ``models.complete`` and settles the cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from tanglebrain import models
from tanglebrain.budget import Budget, Reservation
from tanglebrain.errors import BackendError, CircuitOpen, ConfigError
from tanglebrain.limits import Limits as Limits
from tanglebrain.limits import Slot
from tanglebrain.roster import Backend, Roster
from tanglebrain.router import LoadState
from tanglebrain.trace import Call, Run

# Every call sends max_tokens: the output cap of its role (roster settings, or the
# backend's own). Under a budget the same number is reserved, so the reservation is a
# true upper bound; when the money left cannot pay for that many, fewer are sent, but
# never fewer than BUDGET_MIN_TOKENS (nor more than the cap).
BUDGET_MIN_TOKENS = 256
# The gate's classifier answers SIMPLE or COMPLEX; room for a model that adds a period.
GATE_MAX_TOKENS = 16
# Headroom on the prompt reservation: tokenizers differ from provider to provider.
PROMPT_HEADROOM = 1.1
# Finish reasons of a reply that did not end by itself: the text is incomplete.
TRUNCATED = frozenset({"length", models.REPEATED})


@dataclass(frozen=True)
class Attachment:
    """A bulky input passed by reference (piped stdin is ``stdin``)."""

    name: str
    text: str

    def __post_init__(self) -> None:
        # Binary data (an image, an archive) piped in is useless to a model and costly:
        # every reader of the attachment gets a one-line note instead.
        from tanglebrain import compress  # only runs with attachments need it

        note = compress.binary_note(self.text)
        if note is not None:
            object.__setattr__(self, "text", note)

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


@dataclass
class RunContext:
    """Everything a run's calls share."""

    roster: Roster
    env: Mapping[str, str]
    run: Run
    budget: Budget
    retry: models.RetryPolicy
    timeout: float
    attachments: dict[str, Attachment] = field(default_factory=dict)
    max_subtasks: int = 32
    answer_cap: int | None = None  # the request's own cap on orchestrator turns
    subtasks_used: int = 0
    load: LoadState = field(default_factory=LoadState)
    limits: Limits = field(default_factory=Limits)
    # Per backend, the largest ratio of the prompt tokens it reported to our count of
    # them so far in this run (under a budget); reservations are scaled by it.
    prompt_ratio: dict[str, float] = field(default_factory=dict)
    _probes: dict[str, anyio.Event] = field(default_factory=dict, init=False, repr=False)
    _overrun_warning: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.load.breakers = self.limits.breakers  # one verdict per backend, run or server

    @classmethod
    def for_run(
        cls,
        roster: Roster,
        env: Mapping[str, str],
        run: Run,
        *,
        budget_usd: float | None = None,
        max_subtasks: int | None = None,
        attachments: Sequence[Attachment] = (),
        limits: Limits | None = None,
        answer_cap: int | None = None,
    ) -> RunContext:
        """The context of one run, with the roster's settings unless the request says.

        Args:
            roster: the roster.
            env: where API keys are looked up.
            run: the trace the calls are recorded on.
            budget_usd: this run's cap (else ``settings.budget_usd``).
            max_subtasks: this run's sub-task allowance (else ``settings.max_subtasks``).
            attachments: the request's attachments.
            limits: shared concurrency slots and circuit breakers (a server's); the run
                makes its own when None.
            answer_cap: the request's output cap for orchestrator turns, below the
                roster's (see ``output_cap``).
        """
        settings = roster.settings
        return cls(
            roster=roster,
            env=env,
            run=run,
            budget=Budget(budget_usd if budget_usd is not None else settings.budget_usd),
            retry=models.RetryPolicy(max_attempts=settings.max_attempts),
            timeout=settings.timeout_s,
            attachments={a.name: a for a in attachments},
            max_subtasks=max_subtasks or settings.max_subtasks,
            limits=limits if limits is not None else Limits(),
            answer_cap=answer_cap,
        )

    def limiter(self, backend: Backend) -> anyio.CapacityLimiter:
        """The backend's ``max_concurrency`` slots, shared by every call of the run."""
        return self.limits.of(backend)

    def usable(self) -> list[Backend]:
        """Enabled backends whose API key (if they need one) is set: the real menu."""
        return self.roster.usable(self.env)

    def window_of(self, backend: Backend) -> int | None:
        """Context window of ``backend`` (roster, else litellm, else unknown)."""
        return models.context_window(backend)

    def output_cap(self, backend: Backend, role: str) -> int:
        """The ``max_tokens`` a call in ``role`` to ``backend`` is sent at most.

        The backend's own ``max_output_tokens`` wins; otherwise orchestrator turns (and
        the review's ruling, which the orchestrator writes) get
        ``settings.orchestrator_max_output_tokens`` and every other call
        ``settings.max_output_tokens``. The gate's classifier answers one word: at most
        ``GATE_MAX_TOKENS``. A request's own ``answer_cap`` lowers the cap of orchestrator
        turns (never raises it).
        """
        if role == "gate":  # one word is the whole answer
            return min(GATE_MAX_TOKENS, backend.max_output_tokens or GATE_MAX_TOKENS)
        settings = self.roster.settings
        if backend.max_output_tokens is not None:
            cap = backend.max_output_tokens
        elif role == "orchestrator":
            cap = settings.orchestrator_max_output_tokens
        else:
            cap = settings.max_output_tokens
        if role == "orchestrator" and self.answer_cap is not None:
            return min(cap, self.answer_cap)
        return cap

    def _worst_case(
        self,
        backend: Backend,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        cap: int,
        cache_prefix: bool = False,
    ) -> tuple[int, float | None, int]:
        """(max_tokens to send, worst-case USD, counted prompt tokens) of a call.

        Without a budget: the cap, no worst case, nothing counted. Under one, the prompt
        is reserved at the larger of our count and what this backend reported so far
        (``prompt_ratio``), plus headroom; the output at ``max_tokens``, which is the cap
        or, when the money left cannot pay for it, fewer.

        The share of the prompt the provider's cache will serve (cheaper) is unknown until
        it replies, and the settlement books the true, cache-aware cost; so prompt tokens
        are reserved at the input price. A call that marks its prefix for the cache
        (``cache_prefix``) may instead be billed a cache write, which can cost more than
        the input price: its prompt tokens are reserved at the larger of the two.
        """
        if not self.budget.limited:
            return cap, None, 0
        price = models.prices(backend)
        if price is None:
            return cap, None, 0
        prompt = models.count_tokens(backend, messages)
        if tools:
            prompt += models.estimate_tokens(str(tools))
        scale = max(1.0, self.prompt_ratio.get(backend.id, 1.0))
        per_prompt_token = max(price.input, price.cache_write) if cache_prefix else price.input
        prompt_usd = math.ceil(prompt * scale * PROMPT_HEADROOM + 16) * per_prompt_token
        max_tokens = cap
        left = self.budget.remaining
        if price.output > 0 and left is not None:
            affordable = int((left - prompt_usd) / price.output)
            max_tokens = min(cap, max(BUDGET_MIN_TOKENS, affordable))
        return max_tokens, prompt_usd + max_tokens * price.output, prompt

    async def _wait_for_first_report(self, backend: Backend) -> bool:
        """Under a budget, send one call at a time to a backend that has not reported yet.

        Until a backend has answered once in this run nothing says how its count of prompt
        tokens compares with ours, so a whole fan-out reserved on our count alone could
        overrun the cap. The first call goes alone; the others wait for its report.

        Returns:
            True when this call is that first one (``_release_probe`` must follow).
        """
        price = models.price_per_token(backend) if self.budget.limited else None
        if price is None or price[0] == 0:
            return False  # no cap, a refusal to come, or prompts that cost nothing
        while backend.id not in self.prompt_ratio:
            probe = self._probes.get(backend.id)
            if probe is None:
                self._probes[backend.id] = anyio.Event()
                return True
            await probe.wait()  # it failed without a report: one of the waiters goes next
        return False

    def _release_probe(self, backend_id: str) -> None:
        probe = self._probes.pop(backend_id, None)
        if probe is not None:
            probe.set()

    def _learn(self, backend_id: str, counted: int, reported: int) -> None:
        """Remember how many more prompt tokens ``backend_id`` reports than we count."""
        ratio = reported / counted if counted > 0 and reported > 0 else 1.0
        self.prompt_ratio[backend_id] = max(ratio, self.prompt_ratio.get(backend_id, 0.0))

    def _settle(self, reservation: Reservation, actual: float | None) -> None:
        """Settle the call's cost; say so (once, with the latest figures) past the cap."""
        self.budget.settle(reservation, actual)
        cap, spent = self.budget.cap, self.budget.spent
        if cap is None or spent <= cap + 1e-12:
            return
        message = (
            f"budget exceeded: ${spent:.4f} spent of the ${cap:.4f} cap ({spent / cap:.0%}); "
            f"'{reservation.backend}' counted more tokens than were reserved"
        )
        warnings = self.run.warnings
        if self._overrun_warning in warnings:
            warnings[warnings.index(self._overrun_warning)] = message
            self.run.changed()
        else:
            self.run.warn(message)
        self._overrun_warning = message

    async def call(
        self,
        backend: Backend,
        messages: Sequence[dict[str, Any]],
        call: Call,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        on_text: Callable[[str], None] | None = None,
        alternatives: bool = False,
        on_start: Callable[[], None] | None = None,
        tool_choice: str | None = None,
    ) -> models.Reply:
        """Call ``backend`` under the run's budget, concurrency limits and trace.

        Args:
            backend: the backend to call.
            messages: the conversation to send.
            call: the trace node the attempts are recorded on.
            tools: tool schemas to offer, if any.
            on_text: receives the reply as it streams, when given.
            alternatives: another candidate can take this call. Then a failing backend
                is not retried (unless it asked for a pause with ``Retry-After``), and
                one whose circuit is open is skipped without a call.
            on_start: called once the backend's concurrency slot is taken, just before
                the request goes out (what waited until then was queued).
            tool_choice: sent with ``tools``; ``"none"`` keeps them offered but forbids
                calls (a final turn keeps its prompt prefix, and no placeholder tool).

        Raises:
            BudgetExceeded: the call's worst case does not fit in the budget.
            CircuitOpen: skipped (``alternatives`` only); nothing was sent.
            BackendError: the backend failed after its retries.
        """
        if alternatives and self.load.breakers.is_open(backend.id):
            raise CircuitOpen(backend.id)
        # Counted from here: a call waiting for its turn is load the router must see.
        self.load.in_flight[backend.id] = self.load.in_flight.get(backend.id, 0) + 1
        try:
            return await self._call_under_budget(
                backend, messages, call, tools, on_text, alternatives, on_start, tool_choice
            )
        finally:
            self.load.in_flight[backend.id] -= 1

    async def _call_under_budget(
        self,
        backend: Backend,
        messages: Sequence[dict[str, Any]],
        call: Call,
        tools: Sequence[Mapping[str, Any]] | None,
        on_text: Callable[[str], None] | None,
        alternatives: bool,
        on_start: Callable[[], None] | None,
        tool_choice: str | None,
    ) -> models.Reply:
        """``call`` once admitted: reserve the worst case, call in a slot, settle the cost."""
        cap = self.output_cap(backend, call.role)
        reservation: Reservation | None = None
        probe = False
        # A failure without an HTTP status (timeout, cut stream) may still have been billed:
        # under a cap it books its whole reservation (cost unknown), an HTTP error books 0.
        actual: float | None = None
        # The prompt's stable prefix is marked for the provider's cache where it needs a
        # marker and is long enough to be cached (Anthropic); the others cache on their own.
        cache_prefix = self.roster.settings.prompt_cache == "auto" and models.cacheable_prefix(
            backend, messages, tools
        )
        try:
            probe = await self._wait_for_first_report(backend)
            max_tokens, worst, counted = self._worst_case(
                backend, messages, tools, cap, cache_prefix
            )
            reservation = await self.budget.acquire(backend.id, worst)
            async with Slot(self.limiter(backend)):
                # Checked again once a slot is ours: the circuit may have opened meanwhile.
                if alternatives and not self.load.breakers.admit(backend.id):
                    raise CircuitOpen(backend.id)
                if on_start is not None:
                    on_start()
                reply = await models.complete(
                    backend, messages, call=call, env=self.env, timeout=self.timeout,
                    retry=self.retry, tools=tools, tool_choice=tool_choice, on_text=on_text,
                    max_tokens=max_tokens, on_attempt=self.run.changed, failover=alternatives,
                    cache_prefix=cache_prefix,
                    connect_timeout=self.roster.settings.connect_timeout_s,
                )  # fmt: skip
            self.load.breakers.record(backend.id, ok=True)
            # Every attempt's: a stream cut before this one was billed for what it wrote.
            actual = call.cost_usd
            self._learn(backend.id, counted, reply.prompt_tokens)
            if reply.finish_reason in TRUNCATED:
                asked = call.role == "orchestrator" and cap == self.answer_cap
                warning = _truncation_warning(backend.id, call.role, reply, max_tokens, cap, asked)
                self.run.warn(warning)
            return reply
        except (BackendError, ConfigError) as exc:
            actual = self._failure_cost(backend.id, exc, call)
            raise
        finally:
            if reservation is not None:
                self._settle(reservation, actual)
            if probe:
                self._release_probe(backend.id)

    def _failure_cost(self, backend_id: str, exc: Exception, call: Call) -> float | None:
        """The cost to book after a backend or config error; the backend's own go to its breaker.

        None (the whole reservation) when the failure had no HTTP status (a timeout, a cut
        stream): it may have been billed for more than arrived. After an HTTP error, what
        its attempts were billed for (those cut mid-stream), else nothing.
        """
        if isinstance(exc, CircuitOpen) or not isinstance(exc, BackendError):
            return 0.0  # skipped, or nothing was sent (e.g. the key variable is unset)
        self.load.breakers.record(backend_id, ok=False)
        return None if exc.status is None else call.cost_usd or 0.0


def _truncation_warning(
    backend_id: str, role: str, reply: models.Reply, max_tokens: int, cap: int, asked: bool
) -> str:
    """The warning for a reply that did not end by itself (see ``TRUNCATED``)."""
    what = {"subtask": "sub-task"}.get(role, role)
    if reply.finish_reason == models.REPEATED:
        return (
            f"{backend_id}: the {what} reply was stopped because it kept repeating itself "
            "(truncated)"
        )
    if max_tokens < cap:
        why = "set by the budget"
    else:
        why = "the request's max_tokens" if asked else "max_output_tokens"
    return (
        f"{backend_id}: the {what} reply was cut at its output limit of {max_tokens} tokens "
        f"({why}; truncated)"
    )
