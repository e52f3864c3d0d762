r"""Text that cannot be written as UTF-8: lone surrogates, and how to mend them.

A Python string can hold a surrogate code point alone, and text from outside does: a
command-line argument's undecodable byte (``surrogateescape``), a JSON ``"\ud83d"``
escape from a client that cut an emoji in half, a backend that split a character's
escapes across two stream events. UTF-8 has no form for it, so whatever encodes such
text (a request body, the ledger, stdout) would fail. Mending joins the halves of a
pair and makes each stray one U+FFFD.
"""

from __future__ import annotations

from typing import Any

HIGH = range(0xD800, 0xDC00)  # the first half of a pair


def mend(text: str) -> str:
    """``text`` with surrogate pairs joined and stray surrogates replaced by U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def mended(value: Any) -> Any:
    """A JSON-like ``value`` (str, list, tuple, dict) with every string mended."""
    if isinstance(value, str):
        return mend(value)
    if isinstance(value, dict):
        return {mended(k): mended(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mended(v) for v in value)
    return value
