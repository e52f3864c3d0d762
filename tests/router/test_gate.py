"""The gate's heuristic and the classifier's verdicts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tanglebrain.router import heuristic
from tanglebrain.router._gate import HARD_MAX_CHARS, parse_verdict

TRIVIAL = [
    "what is 2+2?",
    "What's the capital of Australia?",
    "translate 'good morning' to French",
    "convert 72 F to C",
    "Define idempotent.",
    "git command to undo the last commit",
]
NOT_TRIVIAL = [
    ("compare Rust and Go for a CLI tool", "multi-part"),
    ("implement a JSON parser in C", "multi-part"),
    ("review this function for bugs", "multi-part"),
    ("write a script that renames every file", "multi-part"),
    ("what is 2+2? and what is 3+3?", "several questions"),
    ("first do this. then do that. then report.", "sentences"),
    ("fix:\n```\nprint(x\n```", "code"),
    ("- one\n- two", "list"),
    ("x " * 50, "words"),
    ("a" * 300, "characters"),
    ("   ", "empty"),
]


@pytest.mark.parametrize("prompt", TRIVIAL)
def test_trivial(prompt: str) -> None:
    decision = heuristic(prompt)
    assert decision.trivial, decision
    assert decision.by == "heuristic" and "short single request" in decision.reason


@pytest.mark.parametrize(("prompt", "why"), NOT_TRIVIAL)
def test_not_trivial(prompt: str, why: str) -> None:
    decision = heuristic(prompt)
    assert not decision.trivial
    assert why in decision.reason


def test_attachments_are_never_trivial() -> None:
    decision = heuristic("what is 2+2?", attachments=1)
    assert not decision.trivial and decision.reason == "1 attachment"
    assert str(decision) == "orchestrated by heuristic: 1 attachment"


@given(st.text(max_size=HARD_MAX_CHARS + 50), st.integers(0, 3))
def test_heuristic_is_total_and_deterministic(prompt: str, attachments: int) -> None:
    first = heuristic(prompt, attachments)
    assert first == heuristic(prompt, attachments)
    if first.trivial:
        assert attachments == 0 and len(prompt.strip()) <= 280 and "```" not in prompt


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("SIMPLE", True), ("simple.", True), ("COMPLEX", False), ("  Complex\n", False),
        ("It is SIMPLE", True), ("SIMPLE or COMPLEX", None), ("maybe", None), ("", None),
        ("SIMPLEX", None),
    ],
)  # fmt: skip
def test_parse_verdict(reply: str, verdict: bool | None) -> None:
    assert parse_verdict(reply) is verdict
