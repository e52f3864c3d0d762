"""The command lines an agent runs on every tool call, parsed without typer.

``tanglebrain hook AGENT EVENT`` and ``tanglebrain wrap [--agent A] [--threshold N] -- CMD``
are dispatched here straight from ``cli.run_argv``: importing typer, rich or pydantic
would cost more than the handler itself.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE_HOOK = (
    "usage: tanglebrain hook claude|codex pre-tool-use|user-prompt-submit, "
    "tanglebrain hook gemini before-tool|before-agent"
)
# The module of each agent's handlers: only the one asked for is imported.
MODULES = {
    "claude": "tanglebrain.hooks._claude",
    "codex": "tanglebrain.hooks._codex",
    "gemini": "tanglebrain.hooks._gemini",
}
USAGE_WRAP = "usage: tanglebrain wrap [--agent NAME] [--threshold BYTES] -- COMMAND …"


def _error(message: str) -> None:
    sys.stderr.write(f"tanglebrain: error: {message}\n")
    sys.stderr.flush()


def hook_main(argv: list[str]) -> int:
    """Run the handler ``argv`` names on the hook JSON from stdin; print its answer.

    Never blocks the agent: an unknown event exits 1 (a non-blocking error for every
    agent; 2 would block the tool call), and any failure prints nothing and exits 0, so
    the tool call proceeds as without the hook.
    """
    start = time.perf_counter()
    module = MODULES.get(argv[0]) if len(argv) == 2 else None
    handler = None
    if module is not None:
        __import__(module)  # ``importlib`` would import ``warnings`` too
        handler = sys.modules[module].HANDLERS.get(argv[1])
    if handler is None:
        _error(USAGE_HOOK)
        return 1
    from tanglebrain.hooks import _json
    from tanglebrain.hooks._log import record

    env = dict(os.environ)
    try:
        payload: Any = _json.loads(sys.stdin.buffer.read() or b"{}")
        if not isinstance(payload, dict):
            return 0
        cwd = payload.get("cwd") or os.getcwd()
        if not isinstance(cwd, str):
            raise TypeError(f"expected str, bytes or os.PathLike object, not {type(cwd).__name__}")
        out, row, secrets = handler(payload, env, cwd)
    except Exception as exc:  # a broken hook must not break the agent
        sys.stderr.write(f"tanglebrain hook: {type(exc).__name__}: {exc}\n")
        return 0
    if out is not None:
        sys.stdout.write(_json.dumps(out, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    row["handler_ms"] = (time.perf_counter() - start) * 1000
    record(row, env, secrets)
    return 0


def parse_wrap(argv: list[str]) -> tuple[str, str, int | None]:
    """(command, agent, threshold) from ``wrap``'s arguments.

    One word after ``--`` is a shell command line; several are quoted word by word.

    Raises:
        ValueError: the arguments are not a wrap command line (the message says why).
    """
    agent, threshold, i = "cli", None, 0
    while i < len(argv) and argv[i] != "--" and argv[i].startswith("--"):
        name, _, value = argv[i].partition("=")
        if name not in ("--agent", "--threshold"):
            raise ValueError(f"unknown option {name}")
        if not value:
            if i + 1 >= len(argv):
                raise ValueError(f"{name} needs a value")
            i, value = i + 1, argv[i + 1]
        if name == "--agent":
            agent = value
        elif not value.isdigit():
            raise ValueError(f"--threshold {value!r} is not a number of bytes")
        else:
            threshold = int(value)
        i += 1
    words = argv[i + 1 :] if i < len(argv) and argv[i] == "--" else argv[i:]
    if not words or not "".join(words).strip():
        raise ValueError("no command given")
    if len(words) == 1:
        return words[0], agent, threshold
    from tanglebrain.hooks._common import quote

    return " ".join(quote(w) for w in words), agent, threshold


def wrap_main(argv: list[str]) -> int:
    """``tanglebrain wrap``: run the command, print its output or digest, log, return its status."""
    try:
        command, agent, threshold = parse_wrap(argv)
    except ValueError as exc:
        _error(f"{exc} ({USAGE_WRAP})")
        return 2
    from tanglebrain.hooks._classify import core, family, worth_wrapping
    from tanglebrain.hooks._config import HooksConfig, config_of, key_values, roster_text
    from tanglebrain.hooks._log import record
    from tanglebrain.hooks._shell import scan
    from tanglebrain.hooks._wrap import wrap

    env = dict(os.environ)
    text = roster_text(env, os.getcwd())
    config = config_of(text) or HooksConfig()
    result = wrap(command, config.threshold if threshold is None else threshold, env, agent)
    shape = scan(command)
    fam = worth_wrapping(shape, config) or (
        family(core(shape.commands[0])) if shape.commands else ""
    )
    outcome = "digest" if result.raw_id else "pass"
    row = {
        "agent": agent, "event": "wrap", "tool": "Bash", "command": command, "family": fam,
        "outcome": outcome, "exit_code": result.status, "bytes_in": len(result.raw),
        "bytes_out": len(result.output), "handler_ms": result.handler_ms,
        "command_ms": result.command_ms, "raw_id": result.raw_id,
    }  # fmt: skip
    record(row, env, key_values(text, env))
    return result.status
