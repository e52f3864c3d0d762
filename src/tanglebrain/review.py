"""Second opinions: a cross-vendor review panel and the orchestrator's recorded verdict.

After the orchestrator has a draft, up to ``settings.reviewers`` backends good at
``review`` (other providers first, then cheapest) critique it concurrently. The
orchestrator then rules on every disagreement (AFFIRM / MODIFY / REVERSE) and writes
the final version. Reviewer failures degrade the review, never the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from tanglebrain.errors import BackendError, BudgetExceeded, ConfigError
from tanglebrain.roster import Backend
from tanglebrain.runtime import RunContext
from tanglebrain.trace import Call, Critique, Disagreement, Review, Verdict

MARKER = "REVIEW PANEL"
SEVERITIES = ("blocker", "major", "minor")

# The reviewer's instructions, byte-identical for every reviewer and every run: a stable
# prefix the providers' prompt caches can serve. What varies (the request, the
# attachments' digests, the draft) follows in the user message, the draft last.
REVIEWER_SYSTEM = """You are one reviewer on an independent review panel. Another model wrote a
draft answer to a request; the user message gives the request, then the draft. Critique the
draft against the request: what is right, what is wrong (with the reason and how severe:
blocker, major or minor), and what it misses.

Reply with one JSON object and nothing else, of this shape:
{"agree": ["..."],
 "disagree": [{"point": "...", "reason": "...", "severity": "blocker|major|minor"}],
 "missing": ["..."]}"""

REVIEWER_PROMPT = """REQUEST:
{request}
{attachments}
DRAFT ANSWER:
{draft}"""


def reviewer_messages(request: str, views: str, draft: str) -> list[dict[str, Any]]:
    """What each reviewer is sent: the fixed instructions, then the request and the draft."""
    prompt = REVIEWER_PROMPT.format(
        request=request,
        attachments=f"\nATTACHMENTS (digests):\n{views}\n" if views else "",
        draft=draft,
    )
    return [{"role": "system", "content": REVIEWER_SYSTEM}, {"role": "user", "content": prompt}]


def pick_reviewers(ctx: RunContext, orchestrator: Backend, count: int) -> list[Backend]:
    """Backends good at ``review``: other providers first, then cheapest; never the orchestrator."""
    pool = [
        b for b in ctx.roster.usable(ctx.env) if "review" in b.good_at and b.id != orchestrator.id
    ]
    pool.sort(key=lambda b: (b.provider == orchestrator.provider, b.cost))
    return pool[:count]


def parse_critique(reviewer: str, text: str) -> Critique:
    """Read a critique from ``text``: plain JSON, JSON in a code fence or in prose.

    Text that holds no usable JSON object is kept as a free-form critique.
    """
    for candidate in _json_candidates(text):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and {"agree", "disagree", "missing"} & set(data):
            return Critique(
                reviewer=reviewer,
                status="ok",
                parsed=True,
                agree=_strings(data.get("agree")),
                disagree=_disagreements(data.get("disagree")),
                missing=_strings(data.get("missing")),
                raw=text,
            )
    return Critique(reviewer=reviewer, status="ok", parsed=False, raw=text.strip())


def _json_candidates(text: str) -> list[str]:
    out = [text.strip()]
    out += [m.group(1) for m in re.finditer(r"```(?:json)?\s*\n(.*?)```", text, re.S)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        out.append(text[start : end + 1])
    return out


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if str(v).strip()]


def _disagreements(value: Any) -> list[Disagreement]:
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            severity = str(item.get("severity", "major")).lower()
            out.append(
                Disagreement(
                    point=str(item.get("point", "")).strip(),
                    reason=str(item.get("reason", "")).strip(),
                    severity=severity if severity in SEVERITIES else "major",
                )
            )
        elif str(item).strip():
            out.append(Disagreement(point=str(item).strip(), reason="", severity="major"))
    return out


async def critique(
    ctx: RunContext, reviewers: Sequence[Backend], request: str, views: str, draft: str
) -> list[Critique]:
    """Ask every reviewer concurrently; a failing reviewer yields a failed critique."""
    messages = reviewer_messages(request, views, draft)
    results: list[Critique] = [Critique(reviewer=b.id, status="error") for b in reviewers]

    async def one(i: int, backend: Backend) -> None:
        call = Call("review", backend.id, backend.model)
        ctx.run.extra_calls.append(call)
        try:
            reply = await ctx.call(backend, messages, call)
        except (BackendError, BudgetExceeded, ConfigError) as exc:
            results[i] = Critique(reviewer=backend.id, status="error", error=str(exc))
            return
        results[i] = parse_critique(backend.id, reply.text)

    async with anyio.create_task_group() as tg:
        for i, backend in enumerate(reviewers):
            tg.start_soon(one, i, backend)
    return results


def needs_ruling(critiques: Sequence[Critique]) -> bool:
    """Whether any critique disagrees, misses something, or could not be parsed."""
    return any(c.status == "ok" and (c.disagree or c.missing or not c.parsed) for c in critiques)


def ruling_prompt(critiques: Sequence[Critique]) -> str:
    """The message that hands the critiques back to the orchestrator."""
    lines = [f"{MARKER}: {len(critiques)} independent reviewer(s) critiqued your draft."]
    points = disagreements(critiques)
    for c in critiques:
        if c.status != "ok":
            continue
        if c.parsed:
            lines.append(f"- {c.reviewer} agrees: {'; '.join(c.agree) or '(nothing stated)'}")
            if c.missing:
                lines.append(f"- {c.reviewer} says the draft misses: {'; '.join(c.missing)}")
        else:
            lines.append(f"- {c.reviewer} (free-form): {c.raw[:2000]}")
    if points:
        lines.append("Disagreements to rule on:")
        lines += [
            f"{i}. [{d.severity}] {d.point}: {d.reason} ({who})"
            for i, (who, d) in enumerate(points, 1)
        ]
    lines.append(
        "Rule on each disagreement and overall: AFFIRM (the draft stands), MODIFY (the "
        "draft changes), REVERSE (the conclusion changes), with one line of reasoning each. "
        "Answer in exactly this form:\nVERDICTS:\n1. AFFIRM|MODIFY|REVERSE: reason\n"
        "OVERALL: AFFIRM|MODIFY|REVERSE: reason\nFINAL ANSWER:\n<the complete final answer>"
    )
    return "\n".join(lines)


def disagreements(critiques: Sequence[Critique]) -> list[tuple[str, Disagreement]]:
    """Every disagreement with the reviewer who raised it, blockers first."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    found = [(c.reviewer, d) for c in critiques if c.status == "ok" for d in c.disagree]
    return sorted(found, key=lambda pair: rank[pair[1].severity])


_VERDICT = re.compile(r"^\s*(\d+)[.):]?\s*\**(AFFIRM|MODIFY|REVERSE)\**\s*[:\-—–]?\s*(.*)$", re.M)
_OVERALL = re.compile(
    r"^\s*\**OVERALL\**\s*:?\s*\**(AFFIRM|MODIFY|REVERSE)\**\s*[:\-—–]?\s*(.*)$", re.M | re.I
)
_FINAL = re.compile(r"^\s*\**FINAL ANSWER\**\s*:?\s*\n?", re.M | re.I)


def parse_ruling(
    text: str, points: Sequence[tuple[str, Disagreement]], draft: str
) -> tuple[str, list[Verdict], Verdict | None]:
    """Split the orchestrator's ruling into (final answer, verdicts, overall verdict)."""
    verdicts = []
    for m in _VERDICT.finditer(text.split("OVERALL")[0]):
        i = int(m.group(1)) - 1
        point = points[i][1].point if 0 <= i < len(points) else f"point {i + 1}"
        verdicts.append(Verdict(point=point, verdict=m.group(2), reason=m.group(3).strip()))
    o = _OVERALL.search(text)
    overall = Verdict("overall", o.group(1).upper(), o.group(2).strip()) if o else None
    final = _FINAL.search(text)
    if final:
        answer = text[final.end() :].strip()
    else:
        kept = [
            ln
            for ln in text.splitlines()
            if not _VERDICT.match(ln) and not _OVERALL.match(ln) and ln.strip() != "VERDICTS:"
        ]
        answer = "\n".join(kept).strip()
    return answer or draft, verdicts, overall


async def panel(
    ctx: RunContext,
    orchestrator: Backend,
    convo: list[dict[str, Any]],
    draft: str,
    views: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> Review:
    """Run the whole review: critiques, then the orchestrator's ruling and final version.

    Never raises for backend trouble: without reviewers, or when every reviewer or the
    ruling fails, the draft stands and the review says it was degraded.

    Args:
        ctx: the run's context.
        orchestrator: the backend that wrote the draft; it rules on the critiques.
        convo: the orchestrator's conversation that produced the draft.
        draft: the draft answer.
        views: the attachments' digests, as the orchestrator saw them ("" for none).
        tools: the tool schemas the orchestrator's turns offered, if any. The ruling
            offers them again with ``tool_choice="none"``: it must answer in text, and its
            prompt keeps the same prefix (system prompt and tools) as those turns, which
            the provider's prompt cache can then serve.
    """
    reviewers = pick_reviewers(ctx, orchestrator, ctx.roster.settings.reviewers)
    review = Review(reviewers=[b.id for b in reviewers], answer=draft)
    if not reviewers:
        review.warning = "review skipped: no enabled backend is good at 'review'"
        review.degraded = True
        return review
    review.critiques = await critique(ctx, reviewers, ctx.run.prompt, views, draft)
    if not any(c.status == "ok" for c in review.critiques):
        review.warning = "review degraded: every reviewer failed; the draft stands"
        review.degraded = True
        return review
    if not needs_ruling(review.critiques):
        review.overall = Verdict("overall", "AFFIRM", "every reviewer agreed with the draft")
        return review
    points = disagreements(review.critiques)
    messages = [
        *convo,
        {"role": "assistant", "content": draft},
        {"role": "user", "content": ruling_prompt(review.critiques)},
    ]
    call = Call("orchestrator", orchestrator.id, orchestrator.model)
    ctx.run.extra_calls.append(call)
    try:
        reply = await ctx.call(
            orchestrator, messages, call, tools=tools or None,
            tool_choice="none" if tools else None,
        )  # fmt: skip
    except (BackendError, BudgetExceeded, ConfigError) as exc:
        review.warning = f"review degraded: the ruling failed ({exc}); the draft stands"
        review.degraded = True
        return review
    review.answer, review.verdicts, review.overall = parse_ruling(reply.text, points, draft)
    if review.overall is None:
        review.warning = "review: the orchestrator gave no overall verdict"
    return review
