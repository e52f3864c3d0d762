"""The shape of a roster file: its pydantic models and the limits they enforce.

Each model forbids unknown keys and is frozen. Field checks refuse values that would
only fail at call time: an infinite timeout, a model string with spaces, an
``api_base`` that is not an http(s) URL. ``KEYED_PROVIDERS`` and ``OPENAI_COMPATIBLE``
say which providers need a key and which speak the OpenAI API natively.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tanglebrain.errors import MissingKeyError

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


class Price(BaseModel):
    """USD per million tokens.

    ``cached_input`` prices prompt tokens read from the provider's prompt cache and
    ``cache_write`` those written to it; when left out, ``models.prices`` derives them
    (litellm's map, else the input price).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float = Field(ge=0, strict=True, allow_inf_nan=False)
    output: float = Field(ge=0, strict=True, allow_inf_nan=False)
    cached_input: float | None = Field(default=None, ge=0, strict=True, allow_inf_nan=False)
    cache_write: float | None = Field(default=None, ge=0, strict=True, allow_inf_nan=False)


class RouteWeights(BaseModel):
    """``[settings.route_weights]``: what learned routing trades against what.

    A candidate's score is ``success * P(success) - cost * relative cost - latency *
    relative p50 latency`` (relative: divided by the largest among the candidates), so
    the weights say how many points of success one unit of each is worth.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    success: float = Field(default=1.0, ge=0, le=100, strict=True, allow_inf_nan=False)
    cost: float = Field(default=0.5, ge=0, le=100, strict=True, allow_inf_nan=False)
    latency: float = Field(default=0.1, ge=0, le=100, strict=True, allow_inf_nan=False)
    # The share of sub-tasks sent to the best candidate but one, so that evidence on it
    # stays fresh; 0 never explores.
    explore: float = Field(default=0.05, ge=0, le=0.5, strict=True, allow_inf_nan=False)
    # Days after which an outcome counts half as much as a fresh one.
    half_life_days: float = Field(default=7.0, gt=0, le=3650, strict=True, allow_inf_nan=False)


class Settings(BaseModel):
    """The optional ``[settings]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_subtasks: int = Field(default=32, ge=1, le=10_000, strict=True)
    max_turns: int = Field(default=8, ge=1, le=100, strict=True)
    budget_usd: float | None = Field(default=None, gt=0, strict=True, allow_inf_nan=False)
    timeout_s: float = Field(default=120.0, gt=0, le=86_400, strict=True, allow_inf_nan=False)
    max_attempts: int = Field(default=3, ge=1, le=10, strict=True)
    system_prompt_file: str | None = None
    context_budget_bytes: int = Field(default=6000, ge=200, strict=True)
    llm_digest: bool = Field(default=False, strict=True)
    review: Literal["never", "always"] = "never"
    reviewers: int = Field(default=1, ge=1, le=3, strict=True)
    # A saturated backend's sub-tasks go to an idle one good at the same tag when it
    # costs at most this factor times the cheapest fitting one (see router).
    spill_cost_factor: float = Field(default=2.0, ge=1, le=1_000, strict=True, allow_inf_nan=False)
    # Output caps sent as max_tokens: sub-tasks, reviews and digests, then the
    # orchestrator's turns (its final answer is the longest reply of a run).
    max_output_tokens: int = Field(
        default=DEFAULT_MAX_OUTPUT_TOKENS, ge=1, le=MAX_OUTPUT_LIMIT, strict=True
    )
    orchestrator_max_output_tokens: int = Field(
        default=DEFAULT_ORCHESTRATOR_MAX_OUTPUT_TOKENS, ge=1, le=MAX_OUTPUT_LIMIT, strict=True
    )
    # Sub-task routing: "static" (tag, cost, load) or "learned" (per-tag outcomes in the
    # ledger, weighted by route_weights; see router.learned).
    routing: Literal["static", "learned"] = "static"
    route_weights: RouteWeights = Field(default_factory=lambda: RouteWeights())
    # Trivial requests answered directly, without an orchestrator turn (see router.gate).
    gate: Literal["off", "heuristic", "model"] = "off"
    # "auto": mark the stable prompt prefix cacheable where the provider needs it.
    prompt_cache: Literal["auto", "off"] = "auto"


class Hooks(BaseModel):
    """The optional ``[hooks]`` table: which agent shell commands ``wrap`` digests.

    ``tanglebrain.hooks`` reads this table without pydantic on its fast path; the two
    must accept the same keys and values.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    # shell-glob patterns of commands to wrap besides the defaults, and never to wrap
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    threshold: int = Field(default=6000, ge=0, strict=True)  # bytes printed unchanged


class Backend(BaseModel):
    """One ``[[backend]]`` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=ID_PATTERN, max_length=64)
    model: str = Field(min_length=1, max_length=MAX_MODEL_LEN)
    api_key_env: str | None = Field(default=None, pattern=ENV_PATTERN, max_length=128)
    api_base: str | None = Field(default=None, strict=True, max_length=2048)
    good_at: tuple[str, ...] = Field(min_length=1)
    cost: float = Field(ge=0, strict=True, allow_inf_nan=False)
    can_orchestrate: bool = Field(default=False, strict=True)
    enabled: bool = Field(default=True, strict=True)
    max_concurrency: int = Field(default=4, ge=1, le=1024, strict=True)
    context_window: int | None = Field(default=None, gt=0, strict=True)
    price: Price | None = None
    # This backend's own output cap; it replaces both [settings] caps for its calls.
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_LIMIT, strict=True)
    # "openai": the native OpenAI-compatible transport; "litellm": translation through
    # litellm; "auto": native for the OpenAI API and local servers, litellm otherwise.
    transport: Literal["auto", "openai", "litellm"] = "auto"

    @field_validator("good_at")
    @classmethod
    def _tags(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        for tag in tags:
            if len(tag) > 64 or not re.match(TAG_PATTERN, tag):
                raise ValueError(f"tag {tag!r} must be lowercase letters, digits, '-' or '_'")
        return tags

    @field_validator("model")
    @classmethod
    def _model(cls, model: str) -> str:
        # litellm would send "openai/ a b" as is and fail with an obscure error per call.
        if re.search(r"[\s\x00-\x1f\x7f]", model) or "" in model.split("/"):
            raise ValueError("model must be a non-empty litellm model string without spaces")
        return model

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, base: str | None) -> str | None:
        if base is not None and not _is_http_url(base):
            raise ValueError("api_base must be an http:// or https:// URL")
        return base

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


class Roster(BaseModel):
    """A validated roster file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    settings: Settings = Settings()
    hooks: Hooks = Hooks()
    backends: tuple[Backend, ...] = Field(alias="backend", min_length=1)

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
