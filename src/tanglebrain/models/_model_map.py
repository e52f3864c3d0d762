"""Prices and context windows from the model map litellm ships, without importing litellm.

``import litellm`` costs seconds; its map of models is one JSON file inside the package.
Commands that only need a price or a context window (``backends list``, the router's
context fit, the ledger's prices) read that file directly: located with
``importlib.util.find_spec``, which finds a package without running it, and only the
entries asked for are decoded.

Look-ups follow litellm's naming: the model string as written (``gemini/gemini-2.5-flash``),
else without its provider prefix when the entry belongs to that provider
(``openai/gpt-4.1`` → ``gpt-4.1``), with ``ollama_chat/`` read as ``ollama/``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

_FILE = "model_prices_and_context_window_backup.json"
# Providers whose models litellm files under another provider's name.
_ALIASES = {"ollama_chat": "ollama"}


_DECODER = json.JSONDecoder()


@functools.cache
def _text() -> str:
    """The map's JSON text, or "" when litellm (or its file) is not installed."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return ""
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            return (Path(folder) / _FILE).read_text("utf-8")
        except (OSError, ValueError):
            continue
    return ""


def _entry(key: str) -> dict[str, Any] | None:
    """The map's entry for ``key``, decoded on its own.

    Parsing the whole 3 MB map takes ~60 ms, a tenth of a one-shot run; finding one key
    in its text and decoding just that object takes ~3 ms. Model names are keys only at
    the top level (entries hold no objects keyed by model names), so the first match of
    ``"key": {`` preceded by ``{`` or ``,`` is the entry.
    """
    text = _text()
    quoted = json.dumps(key)
    for needle in (quoted + ": {", quoted + ":{"):
        at = text.find(needle)
        while at != -1:
            i = at - 1
            while i >= 0 and text[i] in " \t\r\n":
                i -= 1
            if i >= 0 and text[i] in "{,":
                try:
                    entry, _ = _DECODER.raw_decode(text, at + len(needle) - 1)
                except ValueError:
                    return None
                return entry if isinstance(entry, dict) else None
            at = text.find(needle, at + 1)
    return None


@functools.lru_cache(maxsize=256)
def info(model: str) -> dict[str, Any]:
    """Litellm's entry for ``model`` (prices, context window, …), or {} when it has none."""
    entry = _entry(model)
    if entry is not None:
        return dict(entry)
    provider, _, rest = model.partition("/")
    if not rest:
        return {}
    provider = _ALIASES.get(provider, provider)
    for key in (f"{provider}/{rest}", rest):
        entry = _entry(key)
        if entry is not None and str(entry.get("litellm_provider", "")) == provider:
            return dict(entry)
    return {}
