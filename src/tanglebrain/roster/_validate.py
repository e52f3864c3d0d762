"""Turning a roster's TOML data into the schema's dataclasses: pydantic once per text.

pydantic validates every roster, but importing it and building the roster's schema cost
~100-150 ms, a third of a one-shot run, and a roster rarely changes between runs. So the
digests of the texts that validated are remembered (``$XDG_CACHE_HOME/tanglebrain/
rosters.json``, the last ``KEEP``), and the data of a text seen before is built into the
dataclasses directly (:func:`build`), with the only changes pydantic makes to valid data:
lists become tuples, integers become floats where a float is declared, tables become
their classes. A digest covers this module and the schema too, so a changed schema
validates again. Tests hold :func:`build` to pydantic's output.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tanglebrain import cachefile
from tanglebrain.roster import _schema
from tanglebrain.roster._schema import Backend, Hooks, Price, Roster, RouteWeights, Settings

try:  # hashlib loads OpenSSL first (~10 ms); its blake2b is this one
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - another Python implementation
    from hashlib import blake2b

if TYPE_CHECKING:
    from pydantic import TypeAdapter

KEEP = 32  # texts remembered: a user's rosters and their recent versions
_CACHE = "rosters.json"
_NESTED: dict[str, type] = {"price": Price, "route_weights": RouteWeights}
_FLOAT = re.compile(r"\bfloat\b")
_TOP = {"settings", "hooks", "backend"}


@functools.cache
def _code() -> bytes | None:
    """What decides whether a text is valid, or None when it cannot be read.

    This module's and the schema's source, and the Python version (``urlsplit`` checks
    URLs). An install without the source remembers nothing: every text is validated.
    """
    try:
        source = b"".join(Path(m).read_bytes() for m in (__file__, _schema.__file__))
    except OSError:
        return None
    return sys.version.encode() + source


def digest(text: str) -> str | None:
    """The key under which ``text`` is remembered once it has validated (None: never)."""
    code = _code()
    if code is None:
        return None
    return blake2b(code + text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def known(key: str | None) -> bool:
    """Whether a roster text with this digest validated before."""
    return key is not None and key in _remembered()


def remember(key: str | None) -> None:
    """Note that the text with this digest validated (failures are ignored)."""
    if key is None:
        return
    others = [k for k in _remembered() if k != key]
    cachefile.write(_CACHE, [*others[max(0, len(others) - KEEP + 1) :], key])


def _remembered() -> list[str]:
    keys = cachefile.read(_CACHE)
    if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
        return keys
    return []


@functools.cache
def _adapter() -> TypeAdapter[Roster]:
    import pydantic

    # The schema's annotations name these without importing pydantic; resolve them there.
    vars(_schema).update(Field=pydantic.Field, AfterValidator=pydantic.AfterValidator)
    return pydantic.TypeAdapter(Roster)


def validate(data: dict[str, Any]) -> Roster | list[dict[str, Any]]:
    """The roster in ``data``, or pydantic's list of what is wrong with it."""
    from pydantic import ValidationError

    try:
        return _adapter().validate_python(data)
    except ValidationError as exc:
        return [dict(e) for e in exc.errors()]


def build_known(key: str | None, data: dict[str, Any]) -> Roster | None:
    """The roster in ``data`` when its text validated before, else None (validate it).

    A cache file edited by hand could name a text that never validated: data ``build``
    cannot take is validated instead of failing.
    """
    if not known(key):
        return None
    try:
        return build(data)
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def build(data: dict[str, Any]) -> Roster:
    """The roster in ``data``, which validated before, without pydantic.

    Raises:
        KeyError: ``data`` has a key no table has (it cannot have validated).
    """
    if data.keys() - _TOP:
        raise KeyError(sorted(data.keys() - _TOP))
    return Roster(
        settings=_make(Settings, data.get("settings", {})),
        hooks=_make(Hooks, data.get("hooks", {})),
        backends=tuple(_make(Backend, entry) for entry in data["backend"]),
    )


def _make(cls: Any, data: dict[str, Any]) -> Any:
    plan, names = _plan(cls)
    if not data.keys() <= names:
        raise KeyError(sorted(data.keys() - names))
    values = {}
    for name, is_float in plan:
        if name not in data:
            continue
        value = data[name]
        if name in _NESTED and isinstance(value, dict):
            value = _make(_NESTED[name], value)
        elif isinstance(value, list):
            value = tuple(value)
        elif is_float and type(value) is int:
            value = float(value)
        values[name] = value
    return cls(**values)


@functools.cache
def _plan(cls: type) -> tuple[list[tuple[str, bool]], frozenset[str]]:
    """``cls``'s fields, each with whether it is declared a float; and their names."""
    plan = [(f.name, bool(_FLOAT.search(str(f.type)))) for f in fields(cls)]
    return plan, frozenset(name for name, _ in plan)
