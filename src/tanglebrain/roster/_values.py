"""The values ``tanglebrain backends set`` accepts, and how each is written as TOML."""

from __future__ import annotations

import math
import re

import tomlkit

from tanglebrain.errors import UsageError

Value = str | int | float | bool | list[str] | dict[str, float] | None

FIELDS: dict[str, str] = {
    "id": "a non-empty string",
    "model": "a non-empty string",
    "api_key_env": "the NAME of an environment variable",
    "api_base": "a URL",
    "good_at": "comma-separated tags, e.g. code,review",
    "cost": "a number >= 0, e.g. 3 or 0.5",
    "can_orchestrate": "true or false",
    "enabled": "true or false",
    "max_concurrency": "a whole number, e.g. 8",
    "context_window": "a whole number of tokens, e.g. 128000",
    "price": "INPUT,OUTPUT[,CACHED_INPUT[,CACHE_WRITE]] in USD per million tokens, "
    "e.g. 3,15 or 3,15,0.3,3.75",
    "max_output_tokens": "a whole number of tokens, e.g. 4096",
    "transport": "auto, openai or litellm",
    "price.cached_input": "a number >= 0: USD per million prompt tokens read from the "
    "prompt cache, e.g. 0.3",
    "price.cache_write": "a number >= 0: USD per million prompt tokens written to the "
    "prompt cache, e.g. 3.75",
}
"""Every backend field ``backends set`` accepts, and what its VALUE must be.

A dotted name sets one part of a table field (the prompt-cache prices of ``price``).
"""
OPTIONAL_FIELDS = frozenset({
    "api_key_env", "api_base", "context_window", "price", "max_output_tokens", "transport",
    "price.cached_input", "price.cache_write",
})  # fmt: skip
"""Fields that an empty VALUE removes from the entry."""
# The parts of a price, in the order ``price`` takes them and they are written.
PRICE_PARTS = ("input", "output", "cached_input", "cache_write")
_TRUE, _FALSE = frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"})


def parse_value(field: str, raw: str) -> Value:
    """Parse a ``backends set`` VALUE by the field's type.

    Args:
        field: a backend field name (a key of :data:`FIELDS`).
        raw: the text from the command line; empty removes an optional field.

    Returns:
        The TOML value, or None to remove the key.

    Raises:
        UsageError: the field is unknown or the value does not fit its type.
    """
    if field not in FIELDS:
        raise UsageError(f"unknown field {field!r}", fix="valid fields: " + ", ".join(FIELDS))
    text = raw.strip()
    if not text and field in OPTIONAL_FIELDS:
        return None
    try:
        return _convert(field, text)
    except ValueError:
        raise UsageError(f"{field}: cannot use {raw!r}", fix=f"give {FIELDS[field]}") from None


def _convert(field: str, text: str) -> Value:
    if field in ("can_orchestrate", "enabled"):
        if text.lower() not in _TRUE | _FALSE:
            raise ValueError(text)
        return text.lower() in _TRUE
    if field in ("max_concurrency", "context_window", "max_output_tokens"):
        return int(text)
    if field == "good_at":
        tags = [t.strip() for t in text.split(",") if t.strip()]
        if not tags:
            raise ValueError(text)
        return tags
    if field in ("cost", "price") or field.startswith("price."):
        numbers = [
            int(p) if re.fullmatch(r"\s*[+-]?\d+\s*", p) else float(p) for p in text.split(",")
        ]
        counts = range(2, len(PRICE_PARTS) + 1) if field == "price" else (1,)
        if len(numbers) not in counts or not all(map(math.isfinite, numbers)):
            raise ValueError(text)
        if field == "price":
            return {part: float(n) for part, n in zip(PRICE_PARTS, numbers, strict=False)}
        return float(numbers[0]) if field.startswith("price.") else numbers[0]
    if field == "transport" and text not in ("auto", "openai", "litellm"):
        raise ValueError(text)
    if not text:
        raise ValueError(text)
    return text


def render(value: Value) -> str:
    """``value`` as TOML text; a price as an inline table of floats, its parts in order."""
    if isinstance(value, dict):
        parts = [
            f"{k} = {tomlkit.item(float(value[k])).as_string()}" for k in PRICE_PARTS if k in value
        ]
        return "{ " + ", ".join(parts) + " }"
    return tomlkit.item(value).as_string()
