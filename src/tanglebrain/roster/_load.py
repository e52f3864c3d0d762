"""Parsing a roster file, strictly, with errors a person can act on.

Loading refuses unknown keys, literal secrets (in any string, lists and tables
included), duplicate ids, bad values, a hosted model with neither a key variable nor an
``api_base``, and nesting deeper than a roster ever needs. Each refusal is a
``ConfigError`` whose one line names the file, the line, the backend, the field and the
fix.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from tanglebrain.errors import ConfigError, not_utf8
from tanglebrain.roster import _validate
from tanglebrain.roster._schema import (
    KEYED_PROVIDERS,
    OPENAI_COMPATIBLE,
    Backend,
    Hooks,
    Price,
    Roster,
    RouteWeights,
    Settings,
)

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


def load_file(path: Path) -> Roster:
    """Read and validate one roster file."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM, as Windows editors save
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read roster: {not_utf8(exc)}", file=path,
                          fix="save the roster as UTF-8 text") from None  # fmt: skip
    except OSError as exc:
        raise ConfigError(f"cannot read roster: {exc.strerror or exc}", file=path) from None
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
    key = _validate.digest(text)
    roster = _validate.build_known(key, data)
    seen_before = roster is not None
    if roster is None:
        checked = _validate.validate(data)
        if isinstance(checked, list):
            raise _explain(checked, data, text, path)
        roster = checked
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
    if not seen_before:
        _validate.remember(key)
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
# What pydantic calls an unknown key (of a dataclass, of a mapping).
_UNKNOWN_KEY = {"unexpected_keyword_argument", "extra_forbidden"}
# Fixes for a field's own checks (pydantic reports them all as "value_error").
_VALUE_FIXES = {
    "model": 'use the litellm model string, e.g. model = "openai/gpt-4.1"',
    "api_base": 'use the server\'s URL, e.g. api_base = "http://localhost:11434"',
    "good_at": 'use short tags, e.g. good_at = ["summarize"]',
}


def _explain(
    errors: list[dict[str, Any]], data: dict[str, Any], text: str, path: Path | str
) -> ConfigError:
    # An unknown key is often the misspelling of a missing one: name it first.
    err = next((e for e in errors if e["type"] in _UNKNOWN_KEY), errors[0])
    loc = tuple(err["loc"])
    kind = "extra_forbidden" if err["type"] in _UNKNOWN_KEY else err["type"]
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
    if loc and loc[0] in ("settings", "hooks") and field != loc[0]:
        field = ".".join(str(p) for p in key_loc if isinstance(p, str))  # the whole dotted path
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
    fix = _fix(kind, field, ctx)
    value = err.get("input")
    if (
        kind not in {"too_short"}
        and isinstance(value, str | int | float | bool)
        and len(repr(value)) < 60
    ):
        problem = f"{problem} (got {value!r})"
    return ConfigError(problem, file=path, line=line, backend=backend, field=field, fix=fix)


def _fix(kind: str, field: str | None, ctx: dict[str, Any]) -> str:
    """The fix for a failed check of ``field``, with the limit it broke filled in."""
    if kind == "string_pattern_mismatch" and field == "api_key_env":
        return "give the NAME of an environment variable, e.g. ANTHROPIC_API_KEY"
    if kind == "value_error" and field in _VALUE_FIXES:
        return _VALUE_FIXES[field]
    fix = _FIXES.get(kind, "see the roster reference in README.md")
    return fix.format(**{k: f"{v:g}" for k, v in ctx.items() if isinstance(v, int | float)})


def _valid_keys(loc: tuple[Any, ...]) -> list[str]:
    if loc and loc[0] == "settings":
        table: Any = RouteWeights if "route_weights" in loc[:-1] else Settings
    elif loc and loc[0] == "hooks":
        table = Hooks
    elif loc and loc[0] == "backend":
        table = Price if "price" in loc[:-1] else Backend
    else:
        return ["settings", "hooks", "backend"]
    return [f.name for f in fields(table)]


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
    elif loc and loc[0] in ("settings", "hooks"):
        # A nested table has a header of its own: [settings.route_weights]
        names = [str(p) for p in loc[:-1] if isinstance(p, str)] if len(loc) > 2 else [loc[0]]
        table = r"\s*\.\s*".join(re.escape(n) for n in names)
        hdr = [i for i, ln in enumerate(lines) if re.match(rf"\s*\[\s*{table}\s*\]", ln)]
        if not hdr and len(names) > 1:  # an inline table: route_weights = { … } in [settings]
            return _find_line(text, (loc[0], names[1]))
        if not hdr:
            return None
        start, section = hdr[0], True
        later = [i for i, ln in enumerate(lines) if i > start and re.match(r"\s*\[", ln)]
        end = later[0] if later else len(lines)
        key = loc[-1] if len(loc) > 1 else None
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
