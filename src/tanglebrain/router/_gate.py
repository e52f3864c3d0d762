"""The gate: whether a request is trivial enough to skip the orchestrator.

A trivial request (short, one question, no attachments, no sign of multi-part work)
is answered directly by the cheapest backend that fits, without an orchestrator turn.
``heuristic`` decides from the text alone, in microseconds and deterministically.
``model`` asks a cheap backend good at ``classify`` (see :data:`CLASSIFY_PROMPT`), but
only about requests the heuristic's hard limits let through: a request with
attachments, over ``HARD_MAX_CHARS`` or with code in it is never trivial.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

CLASSIFY_TAG = "classify"
MAX_CHARS = 280  # the heuristic's idea of "short"
MAX_WORDS = 40
HARD_MAX_CHARS = 2000  # never trivial, whoever decides
MAX_SENTENCES = 2
# Words that announce work in several parts or long output: an orchestrator pays off.
_MULTIPART = (
    r"\b(?:and then|step[- ]by[- ]step|steps|compare|contrast|analy[sz]e|review|refactor|"
    r"implement|design|architect|plan|research|investigate|debug|benchmark|pros and cons|"
    r"trade-?offs?|in detail|each of|for each|all of the|several|multiple|"
    r"write (?:a|an|the|me a) (?:program|script|function|class|module|test|essay|report|"
    r"article|story|document|paper|app|service))\b"
)
_LIST_OR_CODE = r"```|^\s*(?:[-*•]|\d+[.)])\s"
_SENTENCE_END = r"[.!?]+(?:\s|$)"


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The heuristic's regexes, compiled on first use (not on every run's start-up)."""
    return (
        re.compile(_MULTIPART, re.IGNORECASE),
        re.compile(_LIST_OR_CODE, re.MULTILINE),
        re.compile(_SENTENCE_END),
    )


CLASSIFY_PROMPT = (
    "Decide how much work a request needs. Reply with exactly one word: SIMPLE when one "
    "short, direct reply answers it well (a fact, a definition, a small calculation, a "
    "one-line command); COMPLEX when it needs several steps or parts, research, code, "
    "or long writing."
)


@dataclass(frozen=True)
class GateDecision:
    """Whether the gate answers directly, who decided, and why (recorded on the run)."""

    trivial: bool
    by: str  # "heuristic", "model:<backend id>", or "heuristic (…)" after a fallback
    reason: str

    def __str__(self) -> str:
        verdict = "trivial" if self.trivial else "orchestrated"
        return f"{verdict} by {self.by}: {self.reason}"


def hard_limit(prompt: str, attachments: int) -> str | None:
    """Why ``prompt`` can never be trivial (attachments, size, code), or None."""
    if attachments:
        return f"{attachments} attachment{'s' if attachments > 1 else ''}"
    if len(prompt) > HARD_MAX_CHARS:
        return f"long ({len(prompt)} characters)"
    if "```" in prompt:
        return "holds code"
    return None


def heuristic(prompt: str, attachments: int = 0) -> GateDecision:
    """Decide from the text alone whether ``prompt`` is trivial.

    Args:
        prompt: the request.
        attachments: how many attachments come with it (any makes it non-trivial).
    """

    def no(reason: str) -> GateDecision:
        return GateDecision(False, "heuristic", reason)

    text = prompt.strip()
    hard = hard_limit(text, attachments)
    if hard is not None:
        return no(hard)
    if not text:
        return no("empty request")
    if len(text) > MAX_CHARS:
        return no(f"long ({len(text)} characters)")
    multipart, list_or_code, sentence_end = _patterns()
    words = len(text.split())
    if words > MAX_WORDS:
        return no(f"long ({words} words)")
    if list_or_code.search(text) or len([ln for ln in text.splitlines() if ln.strip()]) > 2:
        return no("holds a list or several lines")
    if text.count("?") > 1:
        return no("several questions")
    sentences = len(sentence_end.findall(text + " ")) or 1
    if sentences > MAX_SENTENCES:
        return no(f"{sentences} sentences")
    found = multipart.search(text)
    if found:
        return no(f"asks for multi-part work ({found.group(0).lower()!r})")
    return GateDecision(True, "heuristic", f"short single request ({words} words)")


def parse_verdict(text: str) -> bool | None:
    """The classifier's verdict: True for SIMPLE, False for COMPLEX, None if unclear."""
    words = re.findall(r"[A-Za-z]+", text.upper())
    found = {w for w in words if w in ("SIMPLE", "COMPLEX")}
    if len(found) != 1:
        return None
    return found == {"SIMPLE"}
