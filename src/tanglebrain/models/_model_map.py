"""Prices and context windows from the model map litellm ships, without importing litellm.

``import litellm`` costs seconds; its map of models is one JSON file inside the package.
Commands that only need a price or a context window (``backends list``, the router's
context fit, the ledger's prices) read that file directly: located with
``importlib.util.find_spec``, which finds a package without running it, and only the
entries asked for are decoded.

Look-ups follow litellm's naming: the model string as written (``gemini/gemini-2.5-flash``),
else without its provider prefix when the entry belongs to that provider
(``openai/gpt-4.1`` → ``gpt-4.1``), with ``ollama_chat/`` read as ``ollama/``.

Even so, reading the 3 MB file costs ~6 ms and a look-up ~8-12 ms (a model the map does
not know is the slowest: every spelling is searched for), on every run. So the answers are
remembered in a small file, ``$XDG_CACHE_HOME/tanglebrain/model-map.json`` (default
``~/.cache``), which holds only the fields used here for the models asked about and is
valid for one version of the map (its path, size and modification time). The cache is an
optimisation only: a missing, stale, corrupt or unwritable file means the slow path.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from tanglebrain import cachefile

_FILE = "model_prices_and_context_window_backup.json"
# Providers whose models litellm files under another provider's name.
_ALIASES = {"ollama_chat": "ollama"}


_DECODER = json.JSONDecoder()


# The fields read from an entry (prices, cache prices, context window, provider).
FIELDS = (
    "input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
    "cache_creation_input_token_cost", "max_input_tokens", "max_tokens", "litellm_provider",
)  # fmt: skip


@functools.cache
def _source() -> Path | None:
    """Where the map is, or None when litellm (or its file) is not installed."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / _FILE
        if path.is_file():
            return path
    return None


# Bumped whenever the look-up or FIELDS change: answers remembered before are then ignored.
FORMAT = 1


@functools.cache
def _loaded() -> tuple[list[object], str]:
    """(version, JSON text) of the map as read; version [] when answers must not be kept.

    The version is taken around the read: a map replaced while it was read (litellm being
    upgraded) is used, but nothing found in it is remembered. An unreadable map gives ""
    and nothing is remembered either (a passing I/O error must not be kept as "unknown").
    """
    source = _source()
    if source is None:
        return [], ""
    try:
        before = source.stat()
        text = source.read_text("utf-8")
        after = source.stat()
    except (OSError, ValueError):
        return [], ""
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        return [], text
    return _version_of(source, after), text


def _text() -> str:
    """The map's JSON text, or "" when it is not installed or cannot be read."""
    return _loaded()[1]


def _version_of(source: Path, st: os.stat_result) -> list[object]:
    return [FORMAT, str(source), st.st_size, st.st_mtime_ns]


def _version() -> list[object]:
    """The installed map's version now: format, path, size and modification time."""
    source = _source()
    if source is None:
        return []
    try:
        return _version_of(source, source.stat())
    except OSError:
        return []


_CACHE = "model-map.json"


@functools.cache
def _remembered() -> dict[str, dict[str, Any]]:
    """The answers remembered for the installed map ({} when none are, or any is odd)."""
    data = cachefile.read(_CACHE)
    version = _version()
    if not (isinstance(data, dict) and version and data.get("map") == version):
        return {}
    models = data.get("models")
    if not isinstance(models, dict) or not all(_valid(e) for e in models.values()):
        return {}  # hand-edited or from elsewhere: the map itself is the safe answer
    return models


def _valid(entry: object) -> bool:
    """Whether ``entry`` is an answer this module could have written."""
    if not isinstance(entry, dict):
        return False
    for key, value in entry.items():
        if key not in FIELDS:
            return False
        if key == "litellm_provider":
            if not isinstance(value, str):
                return False
        elif not isinstance(value, int | float) or isinstance(value, bool):
            return False
    return True


def _remember(model: str, entry: dict[str, Any]) -> None:
    """Add ``model``'s answer to the cache file (atomically; failures are ignored)."""
    version = _loaded()[0]
    if not version:
        return
    remembered = _remembered()
    remembered[model] = entry
    cachefile.write(_CACHE, {"map": version, "models": remembered})


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
    """Litellm's entry for ``model`` (the ``FIELDS`` it has), or {} when it has none."""
    remembered = _remembered().get(model)
    if isinstance(remembered, dict):
        return dict(remembered)
    entry = {k: v for k, v in _look_up(model).items() if k in FIELDS and v is not None}
    if _valid(entry):  # a map with odd values is read afresh each time
        _remember(model, entry)
    return dict(entry)


def _look_up(model: str) -> dict[str, Any]:
    entry = _entry(model)
    if entry is not None:
        return entry
    provider, _, rest = model.partition("/")
    if not rest:
        return {}
    provider = _ALIASES.get(provider, provider)
    for key in (f"{provider}/{rest}", rest):
        entry = _entry(key)
        if entry is not None and str(entry.get("litellm_provider", "")) == provider:
            return entry
    return {}
