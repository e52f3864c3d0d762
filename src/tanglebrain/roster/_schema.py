"""The shape of a roster file: frozen dataclasses and the limits pydantic enforces on them.

The classes are plain frozen, slotted dataclasses; each field's limits are pydantic
``Field``/``AfterValidator`` metadata inside its (postponed, never evaluated here)
annotation. Importing this module therefore costs a few dataclasses, not pydantic's
~100 ms: ``roster._validate`` resolves the annotations and validates with pydantic only
when a roster's text has not validated before. Every class forbids unknown keys. Field
checks refuse values that would only fail at call time: an infinite timeout, a model
string with spaces, an ``api_base`` that is not an http(s) URL. ``KEYED_PROVIDERS`` and
``OPENAI_COMPATIBLE`` say which providers need a key and which speak the OpenAI API
natively.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from tanglebrain.errors import MissingKeyError

if TYPE_CHECKING:  # resolved by roster._validate, which imports pydantic
    from pydantic import AfterValidator, Field

ID_PATTERN = r"^[a-z0-9_-]+$"
TAG_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

MAX_MODEL_LEN = 256
# Providers whose calls need an API key unless an api_base points at a server of one's
# own, with the variable their documentation names.
KEYED_PROVIDERS = {
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY", "mistral": "MISTRAL_API_KEY", "groq": "GROQ_API_KEY",
    "xai": "XAI_API_KEY", "openrouter": "OPENROUTER_API_KEY", "cohere": "COHERE_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY", "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY", "deepinfra": "DEEPINFRA_API_KEY",
    "cerebras": "CEREBRAS_API_KEY", "anyscale": "ANYSCALE_API_KEY",
}  # fmt: skip
# Providers that speak the OpenAI chat-completions API, with where they listen when the
# roster gives no ``api_base`` (None: a server of one's own, so api_base is required).
OPENAI_COMPATIBLE: dict[str, str | None] = {
    "openai": "https://api.openai.com/v1",
    "ollama": "http://localhost:11434/v1",
    "ollama_chat": "http://localhost:11434/v1",
    "lm_studio": "http://localhost:1234/v1",
    "hosted_vllm": None,
    "groq": "https://api.groq.com/openai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "together_ai": "https://api.together.xyz/v1",
    "mistral": "https://api.mistral.ai/v1",
    "xai": "https://api.x.ai/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "cerebras": "https://api.cerebras.ai/v1",
}

# Default output caps (tokens, sent as max_tokens): every call is bounded, so a model
# that loops cannot run until its context is full.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
DEFAULT_ORCHESTRATOR_MAX_OUTPUT_TOKENS = 8192
MAX_OUTPUT_LIMIT = 1_000_000

KeyStatus = Literal["set", "missing", "not needed"]
# pydantic reads a stdlib dataclass's configuration from this attribute.
_FORBID_EXTRA: dict[str, str] = {"extra": "forbid"}


def _tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    for tag in tags:
        if len(tag) > 64 or not re.match(TAG_PATTERN, tag):
            raise ValueError(f"tag {tag!r} must be lowercase letters, digits, '-' or '_'")
    return tags


def _model_string(model: str) -> str:
    # litellm would send "openai/ a b" as is and fail with an obscure error per call.
    if re.search(r"[\s\x00-\x1f\x7f]", model) or "" in model.split("/"):
        raise ValueError("model must be a non-empty litellm model string without spaces")
    return model


def _api_base(base: str | None) -> str | None:
    if base is not None and not _is_http_url(base):
        raise ValueError("api_base must be an http:// or https:// URL")
    return base


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """USD per million tokens.

    ``cached_input`` prices prompt tokens read from the provider's prompt cache and
    ``cache_write`` those written to it; when left out, ``models.prices`` derives them
    (litellm's map, else the input price).
    """

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID_EXTRA
    input: Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
    output: Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
    cached_input: Annotated[float | None, Field(ge=0, strict=True, allow_inf_nan=False)] = None
    cache_write: Annotated[float | None, Field(ge=0, strict=True, allow_inf_nan=False)] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteWeights:
    """``[settings.route_weights]``: what learned routing trades against what.

    A candidate's score is ``success * P(success) - cost * relative cost - latency *
    relative p50 latency`` (relative: divided by the largest among the candidates), so
    the weights say how many points of success one unit of each is worth.
    """

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID_EXTRA
    success: Annotated[float, Field(ge=0, le=100, strict=True, allow_inf_nan=False)] = 1.0
    cost: Annotated[float, Field(ge=0, le=100, strict=True, allow_inf_nan=False)] = 0.5
    latency: Annotated[float, Field(ge=0, le=100, strict=True, allow_inf_nan=False)] = 0.1
    # The share of sub-tasks sent to the best candidate but one, so that evidence on it
    # stays fresh; 0 never explores.
    explore: Annotated[float, Field(ge=0, le=0.5, strict=True, allow_inf_nan=False)] = 0.05
    # Days after which an outcome counts half as much as a fresh one.
    half_life_days: Annotated[float, Field(gt=0, le=3650, strict=True, allow_inf_nan=False)] = 7.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The optional ``[settings]`` table."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID_EXTRA
    max_subtasks: Annotated[int, Field(ge=1, le=10_000, strict=True)] = 32
    max_turns: Annotated[int, Field(ge=1, le=100, strict=True)] = 8
    budget_usd: Annotated[float | None, Field(gt=0, strict=True, allow_inf_nan=False)] = None
    timeout_s: Annotated[float, Field(gt=0, le=86_400, strict=True, allow_inf_nan=False)] = 120.0
    # A connection (TLS and proxy tunnel included) not made in this long has failed, when
    # timeout_s is longer: a host that drops packets is moved on from in seconds.
    connect_timeout_s: Annotated[
        float, Field(gt=0, le=86_400, strict=True, allow_inf_nan=False)
    ] = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=10, strict=True)] = 3
    system_prompt_file: str | None = None
    context_budget_bytes: Annotated[int, Field(ge=200, strict=True)] = 6000
    llm_digest: Annotated[bool, Field(strict=True)] = False
    review: Literal["never", "always"] = "never"
    reviewers: Annotated[int, Field(ge=1, le=3, strict=True)] = 1
    # A saturated backend's sub-tasks go to an idle one good at the same tag when it
    # costs at most this factor times the cheapest fitting one (see router).
    spill_cost_factor: Annotated[float, Field(ge=1, le=1_000, strict=True, allow_inf_nan=False)] = (
        2.0
    )
    # Output caps sent as max_tokens: sub-tasks, reviews and digests, then the
    # orchestrator's turns (its final answer is the longest reply of a run).
    max_output_tokens: Annotated[int, Field(ge=1, le=MAX_OUTPUT_LIMIT, strict=True)] = (
        DEFAULT_MAX_OUTPUT_TOKENS
    )
    orchestrator_max_output_tokens: Annotated[
        int, Field(ge=1, le=MAX_OUTPUT_LIMIT, strict=True)
    ] = DEFAULT_ORCHESTRATOR_MAX_OUTPUT_TOKENS
    # Sub-task routing: "static" (tag, cost, load) or "learned" (per-tag outcomes in the
    # ledger, weighted by route_weights; see router.learned).
    routing: Literal["static", "learned"] = "static"
    route_weights: RouteWeights = field(default_factory=RouteWeights)
    # Trivial requests answered directly, without an orchestrator turn (see router.gate).
    gate: Literal["off", "heuristic", "model"] = "off"
    # "auto": mark the stable prompt prefix cacheable where the provider needs it.
    prompt_cache: Literal["auto", "off"] = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class Hooks:
    """The optional ``[hooks]`` table: which agent shell commands ``wrap`` digests.

    ``tanglebrain.hooks`` reads this table on its own fast path; the two must accept
    the same keys and values.
    """

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID_EXTRA
    # shell-glob patterns of commands to wrap besides the defaults, and never to wrap
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    threshold: Annotated[int, Field(ge=0, strict=True)] = 6000  # bytes printed unchanged


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """One ``[[backend]]`` entry."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID_EXTRA
    id: Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
    model: Annotated[
        str, Field(min_length=1, max_length=MAX_MODEL_LEN), AfterValidator(_model_string)
    ]
    api_key_env: Annotated[str | None, Field(pattern=ENV_PATTERN, max_length=128)] = None
    api_base: Annotated[
        str | None, Field(strict=True, max_length=2048), AfterValidator(_api_base)
    ] = None
    good_at: Annotated[tuple[str, ...], Field(min_length=1), AfterValidator(_tags)]
    cost: Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
    can_orchestrate: Annotated[bool, Field(strict=True)] = False
    enabled: Annotated[bool, Field(strict=True)] = True
    max_concurrency: Annotated[int, Field(ge=1, le=1024, strict=True)] = 4
    context_window: Annotated[int | None, Field(gt=0, strict=True)] = None
    price: Price | None = None
    # This backend's own output cap; it replaces both [settings] caps for its calls.
    max_output_tokens: Annotated[int | None, Field(ge=1, le=MAX_OUTPUT_LIMIT, strict=True)] = None
    # "openai": the native OpenAI-compatible transport; "litellm": translation through
    # litellm; "auto": native for the OpenAI API and local servers, litellm otherwise.
    transport: Literal["auto", "openai", "litellm"] = "auto"

    def usable(self, env: Mapping[str, str]) -> bool:
        """Whether a call can be made: enabled, with its API key set when it needs one."""
        return self.enabled and self.key_status(env) != "missing"

    def key_status(self, env: Mapping[str, str]) -> KeyStatus:
        """Whether this backend's API key is available in ``env``."""
        if self.api_key_env is None:
            return "not needed"
        return "set" if env.get(self.api_key_env) else "missing"

    def api_key(self, env: Mapping[str, str]) -> str | None:
        """Return the key from ``env``, raising ``MissingKeyError`` when it is unset."""
        if self.api_key_env is None:
            return None
        value = env.get(self.api_key_env)
        if not value:
            raise MissingKeyError(self.id, self.api_key_env)
        return value

    @property
    def provider(self) -> str:
        """The litellm provider prefix of ``model`` (``anthropic`` for ``anthropic/…``)."""
        return self.model.split("/", 1)[0] if "/" in self.model else self.model


def _is_http_url(text: str) -> bool:
    if re.search(r"[\s\x00-\x1f\x7f]", text):
        return False
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Roster:
    """A validated roster file."""

    __pydantic_config__: ClassVar[dict[str, str]] = _FORBID_EXTRA
    settings: Settings = field(default_factory=Settings)
    hooks: Hooks = field(default_factory=Hooks)
    # The file says [[backend]]; the field is named for what it holds.
    backends: Annotated[tuple[Backend, ...], Field(alias="backend", min_length=1)]

    def get(self, backend_id: str) -> Backend | None:
        """Return the backend with this id, or None."""
        return next((b for b in self.backends if b.id == backend_id), None)

    def enabled(self) -> list[Backend]:
        """Enabled backends, in file order."""
        return [b for b in self.backends if b.enabled]

    def usable(self, env: Mapping[str, str]) -> list[Backend]:
        """Enabled backends whose API key (if they need one) is set in ``env``, in file order."""
        return [b for b in self.backends if b.usable(env)]

    def tags(self) -> list[str]:
        """Every ``good_at`` tag of the enabled backends, sorted."""
        return sorted({t for b in self.enabled() for t in b.good_at})

    def key_values(self, env: Mapping[str, str]) -> list[str]:
        """The API-key values ``env`` holds for this roster's backends (to mask them)."""
        return [v for b in self.backends if b.api_key_env and (v := env.get(b.api_key_env))]
