"""``tanglebrain wrap -- CMD``: run a command, print its output or a faithful digest of it.

The command runs in the user's shell (``$SHELL -c`` when that is a POSIX-style shell, else
``bash -c``), so compound commands, pipes, redirections, heredocs and ``cd`` work as they
would unwrapped. Stdout and stderr share one pipe, as the agents merge them, so their
interleaving is kept. Nothing is printed until the command ends. An output of at most the
threshold is printed byte for byte; a bigger one becomes the faithful digest of
:mod:`tanglebrain.compress` (binary data: a one-line note) followed by a line naming the
raw output's id, unless the digest would not be smaller. The raw output is kept in the
state directory for ``tanglebrain raw ID``. The exit status is the command's own; a
command killed by signal N exits ``128+N``, as a shell reports it. The same output always
gives the same bytes, so agents' prompt caches keep working.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import NamedTuple

from tanglebrain.errors import UsageError
from tanglebrain.hooks._config import RAW_KEEP, state_dir
from tanglebrain.state import ensure_dir

POSIX_SHELLS = frozenset({"bash", "zsh", "sh", "dash", "ksh", "mksh", "ash"})
DRAIN_S = 2.0  # how long output is still read after the shell ended (background children)
AGENT_BUDGET = 8000  # bytes of a digest an agent gets whole (see ``budget_for``)
SMALL_BUDGET = 2000  # Claude Code's preview of a successful output it spills to a file
CLAUDE_SPILL = 30_000
_ATTACHMENT = "; the full text is available as an attachment …]"


class Result(NamedTuple):
    """What ``wrap`` printed, and what it measured.

    Attributes:
        output: the bytes printed.
        raw: the command's output.
        status: the exit status (``128+N`` for signal N).
        raw_id: the id of the kept raw output, when a digest was printed.
        command_ms: the command's wall time.
        handler_ms: wrap's own time on top of it (start, digest, keeping the raw output).
    """

    output: bytes
    raw: bytes
    status: int
    raw_id: str | None
    command_ms: float
    handler_ms: float


def shell_for(env: Mapping[str, str]) -> str:
    """The shell that runs wrapped commands: ``$SHELL`` when POSIX-like, else bash, else sh."""
    user = env.get("SHELL", "")
    if Path(user).name in POSIX_SHELLS and os.access(user, os.X_OK):
        return user
    for candidate in ("/bin/bash", "/usr/bin/bash", "/bin/sh"):
        if os.access(candidate, os.X_OK):
            return candidate
    return "sh"


def run_command(command: str, env: Mapping[str, str]) -> tuple[bytes, int, float]:
    """Run ``command`` in the shell; return (output, exit status, wall ms)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [shell_for(env), "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    chunks: list[bytes] = []
    fd = proc.stdout.fileno()

    def drain() -> None:
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    previous = _forward_signals(proc)
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    reader.join(DRAIN_S)  # a background child may hold the pipe open: do not wait for it
    elapsed = (time.perf_counter() - start) * 1000
    return b"".join(chunks), (128 - code if code < 0 else code), elapsed


def _forward_signals(proc: subprocess.Popen[bytes]) -> dict[int, signal.Handlers | None]:
    """Pass SIGTERM and SIGHUP on to the command; ignore SIGINT, which its group gets too."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def forward(sig: int, _frame: FrameType | None) -> None:
        proc.send_signal(sig)

    previous: dict[int, signal.Handlers | None] = {}
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        handler = forward if sig != signal.SIGINT else signal.SIG_IGN
        previous[sig] = signal.signal(sig, handler)  # type: ignore[assignment]
    return previous


def budget_for(agent: str, raw_size: int, status: int) -> int | None:
    """The byte budget of a digest for ``agent``, or None for the faithful digest.

    An agent keeps only part of a big output (Claude Code: ~10,000 characters of a failure,
    a 2 KB preview of a success over 30,000; Codex: 10,000; Gemini: 40,000). A digest cut
    to fit by :func:`tanglebrain.compress.budgeted` (failures and errors first) beats an
    arbitrary head and tail, and the model then sees all of it, last line included.
    """
    if agent == "claude" and status == 0 and raw_size > CLAUDE_SPILL:
        return SMALL_BUDGET
    return AGENT_BUDGET if agent in ("claude", "codex", "gemini") else None


def render(
    raw: bytes, status: int, threshold: int, budget: int | None = None
) -> tuple[bytes, str | None]:
    """What to print for ``raw``, and the raw output's id when that is a digest (pure)."""
    if len(raw) <= threshold:
        return raw, None
    from tanglebrain.compress import binary_note, budgeted, decode, faithful

    text = decode(raw)
    raw_id = hashlib.sha256(raw).hexdigest()[:12]
    trailer = (
        f"[… tanglebrain wrap: digest of {len(raw):,} bytes of output, exit status {status}; "
        f"all of it: tanglebrain raw {raw_id} …]"
    )
    note = binary_note(text, len(raw))
    if note is not None:
        body = note
    elif budget is None:
        body = faithful(text)
    else:
        body = budgeted(text, max(0, budget - len(trailer.encode()) - 1))
        body = body.replace(_ATTACHMENT, " …]")  # the trailer says where the rest is
    out = f"{body.rstrip()}\n{trailer}\n".encode()
    return (raw, None) if len(out) >= len(raw) else (out, raw_id)


def raw_dir(env: Mapping[str, str]) -> Path:
    """Where raw outputs are kept."""
    return state_dir(env) / "raw"


def keep_raw(env: Mapping[str, str], raw_id: str, raw: bytes) -> None:
    """Store ``raw`` as ``raw_id`` (private, atomic) and drop all but the newest ``RAW_KEEP``."""
    folder = ensure_dir(state_dir(env)) / "raw"
    ensure_dir(folder)
    path, tmp = folder / f"{raw_id}.log", folder / f".{raw_id}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    os.replace(tmp, path)
    kept = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in kept[RAW_KEEP:]:
        old.unlink(missing_ok=True)


def load_raw(env: Mapping[str, str], raw_id: str) -> bytes:
    """The raw output kept as ``raw_id`` (or a unique prefix of it).

    Raises:
        UsageError: no such output is kept, or the prefix is ambiguous.
    """
    ref = raw_id.strip().lower()
    folder = raw_dir(env)
    is_id = 6 <= len(ref) <= 64 and not ref.strip("0123456789abcdef")
    found = sorted(folder.glob(f"{ref}*.log")) if is_id else []
    if len(found) > 1:
        raise UsageError(f"raw output id {raw_id!r} is ambiguous", fix="give more characters")
    if not found:
        raise UsageError(
            f"no raw output {raw_id!r} is kept", fix=f"see the ids in {folder} (newest {RAW_KEEP})"
        )
    return found[0].read_bytes()


def wrap(command: str, threshold: int, env: Mapping[str, str], agent: str = "cli") -> Result:
    """Run ``command``, print what ``agent`` should see, and return what happened."""
    start = time.perf_counter()
    raw, status, command_ms = run_command(command, env)
    output, raw_id = render(raw, status, threshold, budget_for(agent, len(raw), status))
    if raw_id is not None:
        try:
            keep_raw(env, raw_id, raw)
        except OSError:
            output, raw_id = raw, None  # a digest must always lead to its raw output
    try:
        sys.stdout.buffer.write(output)
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    handler_ms = (time.perf_counter() - start) * 1000 - command_ms
    return Result(output, raw, status, raw_id, command_ms, max(handler_ms, 0.0))
