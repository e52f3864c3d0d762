"""Opt-in LLM digest of an attachment (``settings.llm_digest = true``).

When an attachment's faithful digest does not fit the context budget and the roster
has a backend good at ``long-context`` or ``summarize``, that backend writes a
structured summary. The summary is then checked against the deterministic must-keep
facts (paths, ``file:line`` locations, error codes, exception types): every fact it
lacks is appended with its original line, verbatim, within the budget. Any failure
falls back to the deterministic budgeted digest.
"""

from __future__ import annotations

from tanglebrain import compress
from tanglebrain.compress._render import render
from tanglebrain.compress._rules import analyse
from tanglebrain.errors import BackendError, BudgetExceeded, ConfigError
from tanglebrain.roster import Backend
from tanglebrain.runtime import Attachment, RunContext
from tanglebrain.trace import Call

SUMMARIZER_TAGS = ("long-context", "summarize")

TEMPLATE = """Summarize the text below for an engineer who will not see it. Keep, verbatim:
every file path and file:line[:col] location, every error and warning message, every error
code, every exception type, every test or build summary line and exit code, and the counts of
repeated messages. Structure: 1) what happened, 2) errors (with locations), 3) warnings,
4) counts. Be concise; do not invent anything. Stay under {limit} bytes.

<<<text {name} ({size} bytes, {lines} lines)>>>
{text}
<<<end text {name}>>>"""


def must_keep(text: str) -> list[tuple[str, str]]:
    """Every must-keep fact of ``text`` with the rendered line it stands on, errors first."""
    analysis = analyse(render(text).lines)
    order = sorted(range(len(analysis.lines)), key=lambda i: (-analysis.level[i], i))
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for i in order:
        for fact in analysis.facts[i]:
            if fact not in seen:
                seen.add(fact)
                out.append((fact, analysis.lines[i]))
    return out


def backfill(summary: str, text: str, budget: int) -> tuple[str, int]:
    """Append the lines of must-keep facts that ``summary`` lacks, within ``budget`` bytes.

    Returns:
        The completed summary and how many missing facts could not be appended.
    """
    missing = [(fact, line) for fact, line in must_keep(text) if fact not in summary]
    if not missing:
        return summary, 0
    header = "\n\nVerbatim lines for facts the summary missed:\n"
    out = summary.rstrip() + header
    left_out = 0
    added: set[str] = set()
    for fact, line in missing:
        if fact in out:  # an earlier appended line already carries it
            continue
        if line in added or len((out + line + "\n").encode()) > budget:
            left_out += line not in added
            continue
        out += line + "\n"
        added.add(line)
    return out.rstrip(), left_out


def summarizer(ctx: RunContext, orchestrator_id: str | None) -> Backend | None:
    """The cheapest enabled backend good at long-context or summarize (not the orchestrator)."""
    pool = [
        b
        for b in ctx.roster.usable(ctx.env)
        if set(SUMMARIZER_TAGS) & set(b.good_at) and b.id != orchestrator_id
    ]
    return min(pool, key=lambda b: b.cost) if pool else None


async def digest(ctx: RunContext, att: Attachment, orchestrator_id: str | None) -> str:
    """The orchestrator's view of ``att``: an LLM summary when it pays, else the budgeted digest."""
    budget = ctx.roster.settings.context_budget_bytes
    faithful = compress.faithful(att.text)
    backend = summarizer(ctx, orchestrator_id)
    if len(faithful.encode()) <= budget or backend is None:
        return compress.budgeted(att.text, budget)
    prompt = TEMPLATE.format(
        limit=budget * 3 // 4, name=att.name, size=att.size, lines=att.lines, text=att.text
    )
    call = Call("digest", backend.id, backend.model)
    ctx.run.extra_calls.append(call)
    try:
        reply = await ctx.call(backend, [{"role": "user", "content": prompt}], call)
    except (BackendError, BudgetExceeded, ConfigError) as exc:
        ctx.run.warn(f"LLM digest of {att.name} failed ({exc}); using the deterministic digest")
        return compress.budgeted(att.text, budget)
    summary = compress.budgeted(reply.text, budget * 3 // 4)  # the model may ignore its limit
    text, left_out = backfill(summary, att.text, budget)
    if left_out:
        text = compress.budgeted(text, budget)
        ctx.run.warn(f"LLM digest of {att.name}: {left_out} must-keep fact(s) did not fit")
    return f"(summary by {backend.id})\n{text}"
