"""Prices and context windows from the model map litellm ships, without importing litellm.

``import litellm`` costs seconds; its map of models is one JSON file inside the package.
Commands that only need a price or a context window (``backends list``, the router's
context fit, the ledger's prices) read that file directly: located with
``importlib.util.find_spec``, which finds a package without running it, and parsed once.

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


@functools.cache
def _entries() -> dict[str, dict[str, Any]]:
    """The whole map, or {} when litellm (or its file) is not installed."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return {}
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / _FILE
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return {str(k): v for k, v in data.items() if isinstance(v, dict)}
    return {}


@functools.lru_cache(maxsize=256)
def info(model: str) -> dict[str, Any]:
    """Litellm's entry for ``model`` (prices, context window, …), or {} when it has none."""
    entries = _entries()
    if model in entries:
        return dict(entries[model])
    provider, _, rest = model.partition("/")
    if not rest:
        return {}
    provider = _ALIASES.get(provider, provider)
    for key in (f"{provider}/{rest}", rest):
        entry = entries.get(key)
        if entry is not None and str(entry.get("litellm_provider", "")) == provider:
            return dict(entry)
    return {}
