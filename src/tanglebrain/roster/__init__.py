"""The roster: which backends exist, what each is good at and costs.

This is the only package that parses roster files. Loading is strict: unknown keys,
literal secrets (in any string, lists and tables included), duplicate ids, bad values
and values that would only fail at call time (an infinite timeout, a model string with
spaces, an ``api_base`` that is not a URL, a hosted model with neither a key variable
nor an ``api_base``, nesting deeper than a roster ever needs) are each a
``ConfigError`` whose one line names the file, the line, the backend, the field and the
fix.

Its modules, one job each:

- ``_schema``: the dataclasses of a roster file and the limits pydantic enforces on them.
- ``_validate``: pydantic's validation, once per text: a text that validated before is
  built without importing pydantic.
- ``_load``: parsing, the strict checks, and errors that point at the line.
- ``_discover``: which roster file is used, and which one may be edited.
- ``_edit``: comment-preserving edits for ``tanglebrain backends add/set/remove``, on
  ``_statements`` (the text as whole lines) and ``_values`` (what a field accepts),
  written by ``_files`` (locked, atomic, backed up).

The editing names are imported on first use: they need ``tomlkit``, which a run that
only reads its roster should not pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tanglebrain.roster._discover import (
    LoadedRoster,
    Source,
    discover,
    editable_path,
    load,
    packaged_path,
    xdg_path,
)
from tanglebrain.roster._load import MAX_DEPTH, load_file, parse
from tanglebrain.roster._load import _find_line as _find_line
from tanglebrain.roster._schema import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    DEFAULT_ORCHESTRATOR_MAX_OUTPUT_TOKENS,
    ENV_PATTERN,
    ID_PATTERN,
    KEYED_PROVIDERS,
    MAX_MODEL_LEN,
    MAX_OUTPUT_LIMIT,
    OPENAI_COMPATIBLE,
    TAG_PATTERN,
    Backend,
    KeyStatus,
    Price,
    Roster,
    RouteWeights,
    Settings,
)

if TYPE_CHECKING:
    from tanglebrain.roster._edit import (
        Change,
        EditResult,
        add_backend,
        edit,
        remove_backend,
        set_field,
    )
    from tanglebrain.roster._files import write_atomic, write_starter
    from tanglebrain.roster._values import FIELDS, OPTIONAL_FIELDS, Value, parse_value

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "DEFAULT_ORCHESTRATOR_MAX_OUTPUT_TOKENS",
    "ENV_PATTERN",
    "FIELDS",
    "ID_PATTERN",
    "KEYED_PROVIDERS",
    "MAX_DEPTH",
    "MAX_MODEL_LEN",
    "MAX_OUTPUT_LIMIT",
    "OPENAI_COMPATIBLE",
    "OPTIONAL_FIELDS",
    "TAG_PATTERN",
    "Backend",
    "Change",
    "EditResult",
    "KeyStatus",
    "LoadedRoster",
    "Price",
    "Roster",
    "RouteWeights",
    "Settings",
    "Source",
    "Value",
    "add_backend",
    "discover",
    "edit",
    "editable_path",
    "load",
    "load_file",
    "packaged_path",
    "parse",
    "parse_value",
    "remove_backend",
    "set_field",
    "write_atomic",
    "write_starter",
    "xdg_path",
]

_LAZY = {
    "Change": "_edit",
    "EditResult": "_edit",
    "add_backend": "_edit",
    "edit": "_edit",
    "remove_backend": "_edit",
    "set_field": "_edit",
    "write_atomic": "_files",
    "write_starter": "_files",
    "FIELDS": "_values",
    "OPTIONAL_FIELDS": "_values",
    "Value": "_values",
    "parse_value": "_values",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
