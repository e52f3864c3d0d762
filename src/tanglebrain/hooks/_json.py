"""``json.loads`` and ``json.dumps`` for the handlers, without importing ``json``.

The ``json`` package imports ``re`` (and ``re`` imports ``enum`` and ``functools``): ~15 ms
of start-up on every tool call. Its C accelerator ``_json`` does the real work and needs
none of that, so these functions drive it directly and give the same results as
``json.loads`` and ``json.dumps``. Anything the accelerator does not take (a malformed
document, a byte order mark, UTF-16) goes to the ``json`` package itself, so errors and
edge cases are exactly its own.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"  # what ``json`` skips around a document


class _Context:
    """The decoder settings ``_json.make_scanner`` reads: those of ``json.loads``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {
        "-Infinity": float("-inf"),
        "Infinity": float("inf"),
        "NaN": float("nan"),
    }.__getitem__


def _fast_loads(text: str) -> Any:
    import _json

    n = len(text)
    start = 0
    while start < n and text[start] in _WHITESPACE:
        start += 1
    obj, end = _json.make_scanner(_Context())(text, start)  # type: ignore[arg-type]
    while end < n and text[end] in _WHITESPACE:
        end += 1
    if end != n:
        raise ValueError("extra data")
    return obj


def loads(data: str | bytes) -> Any:
    """``json.loads(data)``.

    Raises:
        ValueError: ``data`` is not a JSON document (``json.JSONDecodeError``).
        UnicodeDecodeError: bytes that are not text.
    """
    try:
        if isinstance(data, bytes):
            if len(data) < 2 or not data[0] or not data[1]:
                raise ValueError("maybe UTF-16 or UTF-32")  # ``json`` tells which
            return _fast_loads(data.decode("utf-8"))
        return _fast_loads(data)
    except Exception:  # ``json`` itself decides, and words the error
        import json

        return json.loads(data)


def _default(o: object) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps(obj: Any, *, ensure_ascii: bool = True) -> str:
    """``json.dumps(obj, ensure_ascii=ensure_ascii)``."""
    import _json

    quote = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
    if isinstance(obj, str):
        return str(quote(obj))
    encode = _json.make_encoder({}, _default, quote, None, ": ", ", ", False, False, True)
    return "".join(encode(obj, 0))
