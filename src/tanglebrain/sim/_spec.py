"""The simulator's model-spec grammar: which kinds exist, their options, and the parser.

Nothing here does I/O. :mod:`tanglebrain.sim._respond` parses each request's ``model`` string
with :func:`parse_spec`; a bad spec is a :class:`SimError`, the OpenAI-shaped HTTP error every
part of the simulator answers with. The texts the kinds produce are in
:mod:`tanglebrain.sim._scripts`, which re-exports these names.

Model-spec grammar (``litellm`` model ``openai/<spec>`` sends ``<spec>``)::

    spec    := kind [":" option ("," option)*]
    option  := key "=" value

Options for every kind: ``latency=SECONDS`` (sleep before answering), ``tokens=N``
(completion tokens to report), ``prompt_x=FACTOR`` (report FACTOR times the prompt tokens,
as a provider whose tokenizer counts more than ours), ``cached=N`` (report N of the prompt
tokens, at most all, as read from the prompt cache: ``prompt_tokens_details.cached_tokens``,
as OpenAI does), ``fail_rate=P`` (a share P of this spec string's requests, every
1/P-th one counted per spec string, answer HTTP 500 after their latency), ``id=TEXT``
(only makes the spec string distinct). Options for streamed
replies: ``gap=SECONDS`` (pause before each event after the first: a slow, healthy stream),
``pieces=N`` (content chunks, default 3), ``finish=none`` (no finish reason, as some
providers' streams end).
An unknown kind is a 404 ``model_not_found``; an unknown or bad option is a 400. Any kind
answers 500, as llama.cpp's server does, when an assistant message of the history holds
tool-call arguments that are not JSON.

==============  ===============================================  ==========================
kind            behaviour                                        options
==============  ===============================================  ==========================
echo            the last user message, verbatim
worker          ``simulated <spec> result for: <60 chars>``      size=N (exact length),
                                                                 loop=1 (below)
worker:loop=1   a model that never stops: one sentence over and
                over. Streamed: until ``max_tokens`` (4 chars a
                token; finish ``length``) or, without it, until
                the client goes away. Not streamed: ``tokens``
                (default 16384) worth, at most ``max_tokens``,
                finish ``length``
fail            OpenAI error (429 sends ``Retry-After``)         status, retry_after,
                                                                 times=N, then=worker|echo
hang            never answers (503 when the server stops)
drop            200 headers, part of the body, connection closed
malformed       200 with a body that is not a completion:        body=html|page|utf8|
                HTML as JSON (default), an HTML page, invalid    charset|nochoices
                UTF-8, a wrong charset, JSON without choices
empty           200 with ``"choices": []``; with ``choice=1``,     choice=1
                one choice whose content is null
cut             stream: its first N events (default 2: the      size=N, events=N
                role, the first content), then the connection
                closed, before ``[DONE]``; non-stream: like drop
script          next ``SimReply`` queued by ``Simulator.script``
orchestrator    ``delegate_many``/``delegate`` calls, then the   rounds, fanout, calls,
                synthesis of the tool results                    mode=many|single, bad=...
reviewer        JSON critique ``{agree, disagree, missing}``     verdict=agree|minor|blocker,
                                                                 wrap=none|fence|prose
==============  ===============================================  ==========================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS: tuple[str, ...] = (
    "echo", "worker", "fail", "hang", "drop", "malformed",
    "empty", "cut", "script", "orchestrator", "reviewer",
)  # fmt: skip
"""Every model kind the simulator knows, as listed by ``GET /v1/models``."""

_COMMON = frozenset(
    {"latency", "tokens", "id", "gap", "pieces", "finish", "prompt_x", "cached", "fail_rate"}
)
_KIND_OPTIONS: dict[str, frozenset[str]] = {
    "worker": frozenset({"size", "loop"}),
    "cut": frozenset({"size", "events"}),
    "empty": frozenset({"choice"}),
    "malformed": frozenset({"body"}),
    "fail": frozenset({"status", "retry_after", "times", "then", "size", "echo_auth"}),
    "orchestrator": frozenset({"rounds", "fanout", "calls", "mode", "bad"}),
    "reviewer": frozenset({"verdict", "wrap"}),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "then": ("worker", "echo"),
    "mode": ("many", "single"),
    "bad": ("unknown_backend", "bad_json", "too_many"),
    "verdict": ("agree", "minor", "blocker"),
    "wrap": ("none", "fence", "prose"),
    "finish": ("none",),
    "body": ("html", "page", "utf8", "charset", "nochoices"),
}
_INT_RANGES: dict[str, tuple[int, int]] = {
    "tokens": (0, 10_000_000), "cached": (0, 10_000_000), "size": (0, 64 * 1024 * 1024),
    "status": (400, 599), "times": (0, 1_000_000), "rounds": (1, 100), "fanout": (1, 1000),
    "calls": (1, 1000), "echo_auth": (0, 1), "choice": (0, 1), "pieces": (1, 100_000),
    "loop": (0, 1), "events": (0, 100_000),
}  # fmt: skip
_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "latency": (0.0, 3600.0), "retry_after": (0.0, 3600.0), "gap": (0.0, 60.0),
    "prompt_x": (0.0, 1000.0), "fail_rate": (0.0, 1.0),
}  # fmt: skip


class SimError(Exception):
    """An OpenAI-shaped HTTP error the simulator answers with.

    Attributes:
        status: HTTP status code.
        message: human-readable message (always says "simulat...").
        type: OpenAI error ``type``.
        code: OpenAI error ``code``.
        headers: extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Return the JSON error body ``{"error": {message, type, code, param}}``."""
        return {
            "error": {"message": self.message, "type": self.type, "code": self.code, "param": None}
        }


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec; see the module docstring for the grammar."""

    raw: str
    kind: str
    opts: dict[str, str | int | float] = field(default_factory=dict)

    def num(self, key: str, default: float) -> float:
        """Return a numeric option (int or float), or ``default``."""
        value = self.opts.get(key, default)
        return float(value) if isinstance(value, int | float) else default

    def int_opt(self, key: str, default: int | None = None) -> int | None:
        """Return an integer option, or ``default``."""
        value = self.opts.get(key, default)
        return value if isinstance(value, int) else default

    def str_opt(self, key: str, default: str) -> str:
        """Return a string option, or ``default``."""
        value = self.opts.get(key, default)
        return value if isinstance(value, str) else default


def _bad(message: str) -> SimError:
    return SimError(400, f"simulator: {message}", code="invalid_model_spec")


def _convert(key: str, value: str) -> str | int | float:
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise _bad(f"option {key}={value!r} must be one of {', '.join(_CHOICES[key])}")
        return value
    if key in _INT_RANGES:
        lo, hi = _INT_RANGES[key]
        if not value.isdigit() or not lo <= int(value) <= hi:
            raise _bad(f"option {key}={value!r} must be an integer in [{lo}, {hi}]")
        return int(value)
    if key in _FLOAT_RANGES:
        lo_f, hi_f = _FLOAT_RANGES[key]
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not lo_f <= number <= hi_f:
            raise _bad(f"option {key}={value!r} must be a number in [{lo_f:g}, {hi_f:g}]")
        return number
    return value  # id: any text


def parse_spec(raw: str) -> ModelSpec:
    """Parse ``kind[:key=value[,key=value...]]``.

    Args:
        raw: the request's ``model`` string.

    Returns:
        The parsed spec.

    Raises:
        SimError: 404 ``model_not_found`` for an unknown kind, 400 for bad options.
    """
    kind, colon, rest = raw.partition(":")
    if kind not in KINDS:
        raise SimError(
            404,
            f"simulator: unknown model kind {kind!r} (known: {', '.join(KINDS)})",
            code="model_not_found",
        )
    allowed = _COMMON | _KIND_OPTIONS.get(kind, frozenset())
    opts: dict[str, str | int | float] = {}
    for item in rest.split(",") if colon else []:
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            raise _bad(f"option {item!r} in {raw!r} is not key=value")
        if key not in allowed:
            raise _bad(
                f"option {key!r} is not valid for kind {kind!r} ({', '.join(sorted(allowed))})"
            )
        if key in opts:
            raise _bad(f"option {key!r} given twice in {raw!r}")
        opts[key] = _convert(key, value)
    return ModelSpec(raw=raw, kind=kind, opts=opts)
