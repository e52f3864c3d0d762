"""The review branch of the run tree: critiques, rulings, and their JSON form.

A review panel (:mod:`tanglebrain.review`) records one ``Review`` on ``Run.review``: who
reviewed, what each reviewer said and how the orchestrator ruled. These classes are
re-exported by :mod:`tanglebrain.trace`, the place to import them from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(slots=True)
class Disagreement:
    """One point a reviewer disputes."""

    point: str
    reason: str
    severity: Literal["blocker", "major", "minor"] | str


@dataclass(slots=True)
class Critique:
    """What one reviewer said about the draft (``parsed`` False: free-form text)."""

    reviewer: str
    status: Literal["ok", "error"]
    parsed: bool = False
    agree: list[str] = field(default_factory=list)
    disagree: list[Disagreement] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    raw: str = ""
    error: str | None = None


@dataclass(slots=True)
class Verdict:
    """The orchestrator's ruling on one disagreement, or overall."""

    point: str
    verdict: Literal["AFFIRM", "MODIFY", "REVERSE"] | str
    reason: str


@dataclass(slots=True)
class Review:
    """A review panel: who reviewed, what they said, how the orchestrator ruled."""

    reviewers: list[str]
    answer: str
    critiques: list[Critique] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    overall: Verdict | None = None
    warning: str | None = None
    degraded: bool = False

    @property
    def changed(self) -> bool:
        """Whether the panel changed the answer (MODIFY or REVERSE)."""
        rulings = [self.overall, *self.verdicts] if self.overall else self.verdicts
        return any(v.verdict in ("MODIFY", "REVERSE") for v in rulings if v is not None)


def review_to_dict(review: Review) -> dict[str, Any]:
    """A review as plain JSON-able data (for ``--json`` and the ledger)."""
    data = asdict(review)
    data["changed"] = review.changed
    return data


def review_from_dict(data: dict[str, Any]) -> Review:
    """The inverse of ``review_to_dict``."""
    critiques = [
        Critique(**{**c, "disagree": [Disagreement(**d) for d in c.get("disagree", [])]})
        for c in data.get("critiques", [])
    ]
    overall = data.get("overall")
    return Review(
        reviewers=list(data.get("reviewers", [])),
        answer=str(data.get("answer", "")),
        critiques=critiques,
        verdicts=[Verdict(**v) for v in data.get("verdicts", [])],
        overall=Verdict(**overall) if overall else None,
        warning=data.get("warning"),
        degraded=bool(data.get("degraded", False)),
    )
