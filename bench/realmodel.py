"""A real small model as orchestrator and specialists: does delegation hold up?

Needs the local llama.cpp server of ../shared/realmodel (Qwen2.5-Coder-1.5B on 127.0.0.1); when
it does not answer, this prints how to start it and exits 0. Each task asks for three
independent things with known answers ("translate cat, dog and house into French"). Every task
runs twice: delegated (the model orchestrates two specialists that are the same model) and solo
(``no_delegate``: the model answers alone). Per mode it reports the runs that really delegated,
the clean final answers (prose: no tool-call text), the correct ones (every expected word is
there), the sub-tasks lost to schema errors, the orchestrator's context tokens, the wall time
and the longest sub-task.

Mode ``uncapped`` runs delegated with both output caps raised to ``--uncapped`` tokens (as
good as none: the server's context per slot), which is how every call went before replies were
bounded; beside ``delegated`` in one run it shows what the caps do to the longest sub-task.

Targets: >= 9 of 10 delegated runs end with a clean prose answer; 0 sub-tasks lost to schema
errors; with the stock chat template >= 8 of 10 still delegate for real.

The server decides the chat template: start it with the stock one (tool calls come back as
text) or with qwen25-toolcall.jinja (llama.cpp parses them); ``--template auto`` reads which
from the server, or label the run yourself.

Usage: python bench/realmodel.py [--port 8082] [--tasks 10] [--template auto|stock|custom]
                                 [--modes delegated,solo] [--max-turns 4] [--sub-cap 64]
                                 [--orch-cap 384] [--uncapped 8192] [--dump replies.jsonl]
       modes: delegated, solo, uncapped (delegated without output caps)
Runs one task at a time (~35-60 s delegated, ~10 s solo on 2 quiet cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import anyio

from tanglebrain.orchestrator import Request, run
from tanglebrain.roster import Roster, parse
from tanglebrain.toolcalls import parse as parse_calls
from tanglebrain.trace import Run, Subtask, ToolCall

TOOLS = ("delegate", "delegate_many")
PREFIX = "Do these three independent parts in parallel: "
TASKS: list[tuple[str, tuple[str, ...]]] = [
    ("translate 'cat' into French, translate 'dog' into French, translate 'house' into French.",
     ("chat", "chien", "maison")),
    ("translate 'red' into Spanish, translate 'blue' into Spanish, translate 'green' into "
     "Spanish.", ("rojo", "azul", "verde")),
    ("compute 17*23, compute 144/12, compute 2**10.", ("391", "12", "1024")),
    ("name the capital of France, the capital of Japan, the capital of Italy.",
     ("paris", "tokyo", "rome")),
    ("give the chemical symbol of gold, of iron, of sodium.", ("au", "fe", "na")),
    ("give the plural of 'mouse', of 'child', of 'tooth'.", ("mice", "children", "teeth")),
    ("give the opposite of 'hot', of 'up', of 'fast'.", ("cold", "down", "slow")),
    ("translate 'one' into German, translate 'two' into German, translate 'three' into German.",
     ("eins", "zwei", "drei")),
    ("compute 15+27, compute 100-37, compute 9*9.", ("42", "63", "81")),
    ("name the planet closest to the sun, the largest planet, the planet called the red "
     "planet.", ("mercury", "jupiter", "mars")),
    ("say how many days are in a week, how many months are in a year, how many hours are in a "
     "day.", ("7", "12", "24")),
    ("name the Python built-in that gives the length of a list, the one that turns a string "
     "into an integer, the one that writes text to the screen.", ("len", "int", "print")),
]  # fmt: skip

ROSTER = """
[settings]
max_subtasks = 12
max_turns = {max_turns}
timeout_s = 600
max_output_tokens = {sub_cap}
orchestrator_max_output_tokens = {orch_cap}

[[backend]]
id = "orch"
model = "openai/qwen15"
api_base = "{base}"
good_at = ["planning"]
cost = 0
can_orchestrate = true
max_concurrency = 2

[[backend]]
id = "calc"
model = "openai/qwen15"
api_base = "{base}"
good_at = ["math"]
cost = 0
max_concurrency = 2

[[backend]]
id = "lang"
model = "openai/qwen15"
api_base = "{base}"
good_at = ["language", "facts"]
cost = 0
max_concurrency = 2
"""

START = """The local model server does not answer at {base}. Start it, then run this again:
  custom template (tool calls parsed by llama.cpp):
    pid=$(/work/shared/realmodel/start.sh {port})
  stock template (tool calls come back as text): the same command line as start.sh
  without --chat-template-file, e.g.
    dir=/tmp/tb-realmodel; server=$(cat $dir/server-path)
    gguf=$dir/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
    LD_LIBRARY_PATH=$(dirname $server) setsid $server -m $gguf \\
      --host 127.0.0.1 --port {port} --alias qwen15 --jinja --temp 0.4 -c 32768 -np 4 -t 2 \\
      --no-webui >$dir/server-{port}.log 2>&1 &
    pid=$!
  stop it afterwards: kill "$pid"
"""


@dataclass
class Tally:
    """What one mode's runs added up to."""

    runs: int = 0
    delegated: int = 0
    clean: int = 0
    assembled: int = 0
    correct: int = 0
    lost: int = 0
    other: int = 0
    no_call: int = 0
    failed: int = 0
    context: list[int] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    longest_subtask_s: float = 0.0


def server_template(base: str) -> str | None:
    """``custom``/``stock`` as the server's chat template says, None when it is unreachable."""
    try:
        with urllib.request.urlopen(base.removesuffix("/v1") + "/props", timeout=5) as resp:
            props = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return "custom" if "```json" in str(props.get("chat_template", "")) else "stock"


def correct(answer: str, expected: tuple[str, ...]) -> bool:
    """Every expected word is in the answer, as a word (case does not matter)."""
    return all(re.search(rf"\b{re.escape(w)}\b", answer, re.I) for w in expected)


def invalid(sub: Subtask) -> bool:
    """Whether the sub-task was rejected for its fields."""
    return (sub.error or "").startswith("invalid sub-task")


def lost_to_schema(trace: Run) -> int:
    """Sub-tasks that never ran because their call or their fields were rejected."""
    lost = sum(1 for s in trace.subtasks() if invalid(s))
    for tc in trace.rejected_calls():
        if last_turn(tc) or not tc.name:
            continue  # asked for on the last turn, or no call at all (see no_call)
        try:
            args = json.loads(tc.arguments or "{}")
        except ValueError:
            lost += 1
            continue
        tasks = args.get("tasks") if isinstance(args, dict) else None
        lost += len(tasks) if isinstance(tasks, list) else 1
    return lost


def no_call(trace: Run) -> int:
    """Turns before the last that held neither a valid tool call nor an answer."""
    return sum(1 for tc in trace.rejected_calls() if not tc.name and not last_turn(tc))


def last_turn(tc: ToolCall) -> bool:
    """Whether ``tc`` was asked for on the last turn (not run: the answer was due)."""
    return (tc.error or "").startswith("not run: the last turn")


def record(tally: Tally, trace: Run | None, expected: tuple[str, ...], wall: float) -> None:
    """Add one run to ``tally``."""
    tally.runs += 1
    tally.walls.append(wall)
    if trace is None:
        tally.failed += 1
        return
    subs = trace.subtasks()
    tally.delegated += any(s.status == "ok" for s in subs)
    found = parse_calls(trace.answer, TOOLS)
    clean = bool(trace.answer.strip()) and not found.calls and not found.broken
    tally.clean += clean
    tally.assembled += any(w.startswith("orch wrote no answer") for w in trace.warnings)
    tally.correct += clean and correct(trace.answer, expected)
    tally.lost += lost_to_schema(trace)
    tally.no_call += no_call(trace)
    tally.other += sum(s.status != "ok" and not invalid(s) for s in subs)
    tally.context.append(trace.orchestrator_context_tokens)
    for s in subs:
        tally.longest_subtask_s = max(tally.longest_subtask_s, s.latency_ms / 1000)


def dump(path: str | None, mode: str, prompt: str, trace: Run | None, error: str) -> None:
    """Append the run's raw turns to ``path`` (JSON lines): replies to script tests with."""
    if path is None:
        return
    turns = [] if trace is None else [
        {"text": t.text, "calls": [[c.id, c.name, c.arguments, c.error] for c in t.tool_calls]}
        for t in trace.turns
    ]  # fmt: skip
    line = {"mode": mode, "prompt": prompt, "turns": turns, "error": error,
            "answer": trace.answer if trace else "", "warnings": trace.warnings if trace else [],
            "subtasks": [[s.status, s.prompt, s.answer, s.error] for s in
                         (trace.subtasks() if trace else [])]}  # fmt: skip
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")


async def one(roster: Roster, prompt: str, solo: bool) -> tuple[Run | None, str, float]:
    """Run ``prompt`` once; return its trace (None when it failed), the error, its wall time."""
    t0 = time.perf_counter()
    try:
        trace = await run(Request(prompt=prompt, no_delegate=solo), roster, env={})
    except Exception as exc:  # a failed run is counted, not fatal
        return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0
    return trace, "", time.perf_counter() - t0


async def bench(args: argparse.Namespace, rosters: dict[str, Roster]) -> dict[str, Tally]:
    """Every task in every mode, one run at a time; progress on stderr."""
    tallies: dict[str, Tally] = {}
    for mode in args.modes.split(","):
        tally = tallies.setdefault(mode, Tally())
        roster = rosters["uncapped" if mode == "uncapped" else "capped"]
        for i, (task, expected) in enumerate(TASKS[: args.tasks]):
            prompt = PREFIX + task
            trace, error, wall = await one(roster, prompt, solo=mode == "solo")
            record(tally, trace, expected, wall)
            dump(args.dump, mode, prompt, trace, error)
            state = error or f"{len(trace.subtasks()) if trace else 0} sub-task(s)"
            print(f"  {mode} {i + 1}/{args.tasks}: {wall:.0f}s, {state}", file=sys.stderr)
    return tallies


def table(tallies: dict[str, Tally]) -> str:
    """The results as a Markdown table, one column per mode."""
    modes = list(tallies)

    def row(label: str, value: Any) -> str:
        return f"| {label} | " + " | ".join(str(value(tallies[m])) for m in modes) + " |"

    def mean(xs: list[int] | list[float]) -> str:
        return f"{statistics.mean(xs):.0f}" if xs else "-"

    lines = [
        "| | " + " | ".join(modes) + " |",
        "|---|" + "---|" * len(modes),
        row("runs", lambda t: t.runs),
        row("runs with a real delegation", lambda t: t.delegated),
        row("clean final answers (prose, no tool-call text)", lambda t: t.clean),
        row("  of which assembled from sub-task results", lambda t: t.assembled),
        row("correct answers", lambda t: t.correct),
        row("failed runs (no answer)", lambda t: t.failed),
        row("sub-tasks lost to schema errors", lambda t: t.lost),
        row("sub-tasks failed otherwise (backend errors)", lambda t: t.other),
        row("turns with neither a valid call nor an answer", lambda t: t.no_call),
        row("orchestrator context tokens, mean / max",
            lambda t: f"{mean(t.context)} / {max(t.context, default=0)}"),
        row("wall time total / mean per run (s)",
            lambda t: f"{sum(t.walls):.0f} / {mean(t.walls)}"),
        row("longest sub-task wall time (s)", lambda t: f"{t.longest_subtask_s:.1f}"),
    ]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--tasks", type=int, default=10, help=f"1 to {len(TASKS)}")
    parser.add_argument("--template", default="auto", choices=["auto", "stock", "custom"])
    parser.add_argument("--modes", default="delegated,solo")
    parser.add_argument("--sub-cap", type=int, default=64, help="sub-task output cap, tokens")
    parser.add_argument("--orch-cap", type=int, default=384, help="orchestrator output cap")
    parser.add_argument("--max-turns", type=int, default=4, help="orchestrator turns per run")
    parser.add_argument("--uncapped", type=int, default=8192, help="both caps in mode uncapped")
    parser.add_argument("--dump", help="append every run's raw turns to this JSON-lines file")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}/v1"
    detected = server_template(base)
    if detected is None:
        print(START.format(base=base, port=args.port))
        return
    template = detected if args.template == "auto" else args.template
    os.environ.setdefault("TANGLEBRAIN_NO_LOG", "1")
    unknown = set(args.modes.split(",")) - {"delegated", "solo", "uncapped"}
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    rosters = {
        name: parse(ROSTER.format(base=base, sub_cap=sub, orch_cap=orch, max_turns=args.max_turns))
        for name, sub, orch in (
            ("capped", args.sub_cap, args.orch_cap),
            ("uncapped", args.uncapped, args.uncapped),
        )
    }
    load = os.getloadavg()
    t0 = time.perf_counter()
    tallies = anyio.run(bench, args, rosters)
    after = os.getloadavg()
    print(f"template: {template}; {args.tasks} tasks; caps: sub-task {args.sub_cap}, "
          f"orchestrator {args.orch_cap} tokens (uncapped: {args.uncapped}); "
          f"{time.perf_counter() - t0:.0f}s in all; "
          f"load average {load[0]:.2f} before, {after[0]:.2f} after "
          f"({os.cpu_count()} cores)\n")  # fmt: skip
    print(table(tallies))


if __name__ == "__main__":
    main()
