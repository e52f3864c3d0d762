"""The roster: which backends exist, what each is good at and costs.

This is the only module that parses roster files. Loading is strict: unknown keys,
literal secrets (in any string, lists and tables included), duplicate ids, bad values
and values that would only fail at call time (an infinite timeout, a model string with
spaces, an ``api_base`` that is not a URL, a hosted model with neither a key variable
nor an ``api_base``, nesting deeper than a roster ever needs) are each a
``ConfigError`` whose one line names the file, the line, the backend, the field and the
fix.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tanglebrain.errors import ConfigError, MissingKeyError

ID_PATTERN = r"^[a-z0-9_-]+$"
TAG_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Values that look like credentials rather than references to them.
_SECRET_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(sk-[A-Za-z0-9_-]{8,}|sk_[A-Za-z0-9_]{8,}|AIza[0-9A-Za-z_-]{20,}|"
    r"xox[abp]-[A-Za-z0-9-]{8,}|gh[pousr]_[A-Za-z0-9]{20,}|Bearer\s+\S{8,}|"
    r"eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]+)"
)
# Key names that mean "I am pasting a secret here".
_SECRET_KEY = re.compile(r"(^|_)(api_?key|secret|token|password|passwd|auth)($|_)", re.I)
# A roster is at most three levels deep ([[backend]] > price > value); anything much
# deeper is a mistake, and unbounded depth would exhaust the parser's stack.
MAX_DEPTH = 16
# A dotted key or header of more than MAX_DEPTH parts ([a.b.c…]): refused before parsing,
# because the TOML parser's time grows with the square of its length.
_PART = r"""(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')"""
_DEEP_KEY = re.compile(
    rf"^[ \t]*\[{{0,2}}[ \t]*{_PART}(?:[ \t]*\.[ \t]*{_PART}){{{MAX_DEPTH},}}", re.M
)
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
Source = Literal["flag", "env", "cwd", "xdg", "packaged"]


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float = Field(ge=0, strict=True, allow_inf_nan=False)
    output: float = Field(ge=0, strict=True, allow_inf_nan=False)


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
    backends: tuple[Backend, ...] = Field(alias="backend", min_length=1)

    def get(self, backend_id: str) -> Backend | None:
        """Return the backend with this id, or None."""
        return next((b for b in self.backends if b.id == backend_id), None)

    def enabled(self) -> list[Backend]:
        """Enabled backends, in file order."""
        return [b for b in self.backends if b.enabled]

    def tags(self) -> list[str]:
        """Every ``good_at`` tag of the enabled backends, sorted."""
        return sorted({t for b in self.enabled() for t in b.good_at})

    def key_values(self, env: Mapping[str, str]) -> list[str]:
        """The API-key values ``env`` holds for this roster's backends (to mask them)."""
        return [v for b in self.backends if b.api_key_env and (v := env.get(b.api_key_env))]


@dataclass(frozen=True)
class LoadedRoster:
    """A roster plus where it came from."""

    roster: Roster
    path: Path
    source: Source


def packaged_path() -> Path:
    """The default roster shipped inside the package."""
    return Path(__file__).with_name("roster.toml")


def xdg_path(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/tanglebrain/roster.toml`` (default ``~/.config``)."""
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tanglebrain" / "roster.toml"


def discover(explicit: Path | None, env: Mapping[str, str], cwd: Path) -> tuple[Path, Source]:
    """Find the roster file: flag, then env var, then ./roster.toml, then XDG, then packaged.

    Raises:
        ConfigError: when an explicitly named file (flag or env var) does not exist.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError("roster file not found", file=explicit, fix="check the --roster path")
        return explicit, "flag"
    from_env = env.get("TANGLEBRAIN_ROSTER")
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError("roster file not found", file=path, fix="check $TANGLEBRAIN_ROSTER")
        return path, "env"
    if (cwd / "roster.toml").is_file():
        return cwd / "roster.toml", "cwd"
    if xdg_path(env).is_file():
        return xdg_path(env), "xdg"
    return packaged_path(), "packaged"


def load(
    explicit: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LoadedRoster:
    """Discover and load the roster."""
    env = os.environ if env is None else env
    path, source = discover(explicit, env, cwd or Path.cwd())
    return LoadedRoster(load_file(path), path, source)


def load_file(path: Path) -> Roster:
    """Read and validate one roster file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read roster: {reason}", file=path) from None
    return parse(text, path)


def parse(text: str, path: Path | str = "<roster>") -> Roster:
    """Validate roster TOML text; ``path`` is used only in messages."""
    deep = _DEEP_KEY.search(text)
    if deep:
        raise _too_deep(text, path, None, None, line=text.count("\n", 0, deep.start()) + 1)
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise _too_deep(text, path, None, None) from None
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(where.group(1)) if where else max(1, len(text.splitlines()))
        msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        raise ConfigError(
            f"invalid TOML: {msg}", file=path, line=line, fix="fix the TOML syntax"
        ) from None
    _refuse_deep_and_secret(data, text, path)
    try:
        # by alias only: the field is named "backends", but the file says [[backend]].
        roster = Roster.model_validate(data, by_name=False)
    except ValidationError as exc:
        raise _explain(exc, data, text, path) from None
    seen: dict[str, int] = {}
    for i, b in enumerate(roster.backends):
        if b.id in seen:
            raise ConfigError(
                f"duplicate id (also backend #{seen[b.id] + 1})",
                file=path,
                line=_find_line(text, ("backend", i, "id")),
                backend=b.id,
                field="id",
                fix="give every backend a unique id",
            )
        seen[b.id] = i
    for i, b in enumerate(roster.backends):
        _require_key_or_base(b, i, text, path)
    return roster


def _require_key_or_base(b: Backend, index: int, text: str, path: Path | str) -> None:
    """Refuse a hosted model that has no key variable and no server of its own.

    A disabled entry is a draft that sends nothing; enabling it runs this check again.
    """
    var = KEYED_PROVIDERS.get(b.provider) if "/" in b.model else None
    if b.enabled and var and b.api_key_env is None and b.api_base is None:
        raise ConfigError(
            f"{b.provider} needs an API key, but neither api_key_env nor api_base is set",
            file=path,
            line=_find_line(text, ("backend", index, "api_key_env")),
            backend=b.id,
            field="api_key_env",
            fix=f'add api_key_env = "{var}" (the NAME of the variable holding the key), '
            "or api_base for a server of your own",
        )
    native_unknown = b.provider not in OPENAI_COMPATIBLE or "/" not in b.model
    if b.transport == "openai" and b.api_base is None and native_unknown:
        raise ConfigError(
            f'transport = "openai" needs an api_base: {b.provider} is not a known '
            "OpenAI-compatible service",
            file=path,
            line=_find_line(text, ("backend", index, "transport")),
            backend=b.id,
            field="transport",
            fix="set api_base to the server's OpenAI-compatible root (…/v1), "
            'or transport = "auto"',
        )


def check_key(backend: Backend, env: Mapping[str, str]) -> None:
    """Raise ``MissingKeyError`` when ``backend`` needs a key that ``env`` lacks."""
    backend.api_key(env)


# --- error reporting -------------------------------------------------------------


def _refuse_deep_and_secret(data: dict[str, Any], text: str, path: Path | str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` and any string that looks like a secret."""
    for loc, key, value in _walk(data):
        if len(loc) > MAX_DEPTH:
            raise _too_deep(text, path, loc, _backend_id(data, loc))
        is_key = isinstance(loc[-1], str)  # else an item of a list, under the key ``key``
        key_is_secret = is_key and bool(_SECRET_VALUE.search(key))
        named_like_key = is_key and bool(_SECRET_KEY.search(key)) and key != "api_key_env"
        looks_like_key = isinstance(value, str) and bool(_SECRET_VALUE.search(value))
        if key_is_secret or named_like_key or looks_like_key:
            raise ConfigError(
                "literal secrets are refused" + (" (in a key name)" if key_is_secret else ""),
                file=path,
                line=_find_line(text, loc),
                backend=_backend_id(data, loc),
                field=None if key_is_secret else key,  # never echo the secret itself
                fix='put the key in an environment variable and set api_key_env = "VAR_NAME"',
            )


def _too_deep(
    text: str,
    path: Path | str,
    loc: tuple[Any, ...] | None,
    backend: str | None,
    line: int | None = None,
) -> ConfigError:
    field = None
    if loc is not None:
        line = _find_line(text, loc)
        field = next((str(p) for p in reversed(loc[:MAX_DEPTH]) if isinstance(p, str)), None)
    elif line is None:  # the TOML parser itself gave up: point at the first deep line
        line = next(
            (i for i, ln in enumerate(text.splitlines(), 1)
             if ln.count("[") + ln.count("{") > MAX_DEPTH),
            None,
        )  # fmt: skip
    return ConfigError(
        f"nested more than {MAX_DEPTH} levels deep",
        file=path,
        line=line,
        backend=backend,
        field=field,
        fix="a roster needs only [settings], [[backend]] tables and flat values",
    )


def _walk(data: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], str, Any]]:
    """Every value in ``data``, list items included, in file order, without recursion.

    Yields ``(location, key, value)``: the path to the value (keys and list indices) and
    the name of the key it sits under.
    """
    stack: list[tuple[tuple[Any, ...], str, Any]] = [((), "", data)]
    while stack:
        loc, key, node = stack.pop()
        if loc:
            yield loc, key, node
        if len(loc) > MAX_DEPTH:
            continue  # the caller refuses it; do not walk further down
        if isinstance(node, dict):
            stack.extend(((*loc, str(k)), str(k), v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend(((*loc, i), key, v) for i, v in reversed(list(enumerate(node))))


def _backend_id(data: dict[str, Any], loc: tuple[Any, ...]) -> str | None:
    if len(loc) >= 2 and loc[0] == "backend" and isinstance(loc[1], int):
        backends = data.get("backend")
        if isinstance(backends, list) and loc[1] < len(backends):
            entry = backends[loc[1]]
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                return str(entry["id"])
        return f"#{loc[1] + 1}"
    return None


_FIXES = {
    "missing": "add it",
    "string_pattern_mismatch": "use lowercase letters, digits, '-' or '_'",
    "greater_than_equal": "use a number >= {ge}",
    "greater_than": "use a number > {gt}",
    "less_than_equal": "use a number <= {le}",
    "too_short": 'list at least one tag, e.g. good_at = ["summarize"]',
    "finite_number": "use a finite number",
    "string_too_long": "use at most {max_length} characters",
}
# Fixes for a field's own checks (pydantic reports them all as "value_error").
_VALUE_FIXES = {
    "model": 'use the litellm model string, e.g. model = "openai/gpt-4.1"',
    "api_base": 'use the server\'s URL, e.g. api_base = "http://localhost:11434"',
    "good_at": 'use short tags, e.g. good_at = ["summarize"]',
}


def _explain(
    exc: ValidationError, data: dict[str, Any], text: str, path: Path | str
) -> ConfigError:
    errors = exc.errors()
    # An unknown key is often the misspelling of a missing one: name it first.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    kind = err["type"]
    # pydantic reports tuple fields with an index suffix; keep the field name.
    key_loc = tuple(p for p in loc if not (isinstance(p, int) and loc.index(p) > 1))
    field = next((str(p) for p in reversed(key_loc) if isinstance(p, str)), None)
    if field == "backend" and kind in {"tuple_type", "list_type"}:
        return ConfigError(
            "must be an array of tables, written [[backend]]", file=path, field="backend"
        )
    if loc == ("backend",):
        return ConfigError(
            "no [[backend]] entries",
            file=path,
            field="backend",
            fix="add a [[backend]] table, or run `tanglebrain init`",
        )
    if loc and loc[0] == "settings" and field != "settings":
        field = f"settings.{field}"
    backend = _backend_id(data, loc)
    line = _find_line(text, key_loc)
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        valid = _valid_keys(loc)
        guess = difflib.get_close_matches(str(field), valid, n=1)
        fix = f"did you mean '{guess[0]}'?" if guess else "valid keys: " + ", ".join(valid)
        return ConfigError(
            "unknown key", file=path, line=line, backend=backend, field=field, fix=fix
        )
    if kind == "missing":
        return ConfigError(
            "missing required key",
            file=path,
            line=line,
            backend=backend,
            field=field,
            fix=f"add {field} = …",
        )
    problem = str(err["msg"]).replace("valid tuple", "valid list").removeprefix("Value error, ")
    if kind == "string_pattern_mismatch" and field == "api_key_env":
        fix = "give the NAME of an environment variable, e.g. ANTHROPIC_API_KEY"
    elif kind == "value_error" and field in _VALUE_FIXES:
        fix = _VALUE_FIXES[field]
    else:
        fix = _FIXES.get(kind, "see the roster reference in README.md")
        fix = fix.format(**{k: f"{v:g}" for k, v in ctx.items() if isinstance(v, int | float)})
    value = err.get("input")
    if (
        kind not in {"too_short"}
        and isinstance(value, str | int | float | bool)
        and len(repr(value)) < 60
    ):
        problem = f"{problem} (got {value!r})"
    return ConfigError(problem, file=path, line=line, backend=backend, field=field, fix=fix)


def _valid_keys(loc: tuple[Any, ...]) -> list[str]:
    if loc and loc[0] == "settings":
        return list(Settings.model_fields)
    if loc and loc[0] == "backend":
        if "price" in loc[:-1]:
            return list(Price.model_fields)
        return list(Backend.model_fields)
    return ["settings", "backend"]


def _find_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort 1-based line of ``loc`` (e.g. ``("backend", 2, "cost")``) in ``text``."""
    lines = text.splitlines()
    start, end, section = 0, len(lines), False
    if len(loc) >= 2 and loc[0] == "backend" and isinstance(loc[1], int):
        headers = [i for i, ln in enumerate(lines) if re.match(r"\s*\[\[\s*backend\s*\]\]", ln)]
        if loc[1] < len(headers):
            start, section = headers[loc[1]], True
            later = [i for i, ln in enumerate(lines) if i > start and re.match(r"\s*\[", ln)]
            end = later[0] if later else len(lines)
            key = loc[2] if len(loc) > 2 else None
        else:
            return None
    elif loc and loc[0] == "settings":
        hdr = [i for i, ln in enumerate(lines) if re.match(r"\s*\[\s*settings\s*\]", ln)]
        if not hdr:
            return None
        start, section = hdr[0], True
        later = [i for i, ln in enumerate(lines) if i > start and re.match(r"\s*\[", ln)]
        end = later[0] if later else len(lines)
        key = loc[1] if len(loc) > 1 else None
    else:
        key = loc[0] if loc else None
    if isinstance(key, str):
        # key = value, or (at the top level) a [key] / [[key]] / [key.sub] header
        header = r"\[\[?\s*" if not section else "(?!)"
        pat = re.compile(rf"\s*(?:{header})?[\"']?{re.escape(key)}[\"']?\s*[=\].]")
        for i in range(start, end):
            if pat.match(lines[i]):
                return i + 1
    return start + 1 if section else None
