"""The OpenAI wire mapping of ``serve`` (serve._wire), without HTTP: requests, errors, ends.

The same behaviour over real HTTP, with the official SDK, is in test_serve.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tanglebrain import models
from tanglebrain.errors import BackendError, MissingKeyError, NoAnswerError
from tanglebrain.roster import parse
from tanglebrain.serve._wire import ApiError, error_for, finish_reason, parse_chat, render_messages
from tanglebrain.trace import Call, Review, Run, Turn
from tests.helpers import backend_toml

ROSTER = parse(backend_toml("w", "worker", "http://127.0.0.1:9/v1"))
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def chat(**body: Any) -> dict[str, Any]:
    return {"model": "w", "messages": [{"role": "user", "content": "x"}], **body}


@pytest.mark.parametrize(
    ("extra", "cap"),
    [
        ({}, None),
        ({"max_tokens": 64}, 64),
        ({"max_completion_tokens": 32}, 32),
        ({"max_completion_tokens": 32, "max_tokens": 64}, 32),  # the newer name wins
        ({"max_tokens": None}, None),
    ],
)
def test_max_tokens_caps_the_answer(extra: dict[str, Any], cap: int | None) -> None:
    assert parse_chat(chat(**extra), ROSTER).request.answer_max_tokens == cap


@pytest.mark.parametrize("value", [0, -1, "64", 1.5, True])
def test_a_bad_max_tokens_is_a_400(value: Any) -> None:
    with pytest.raises(ApiError) as caught:
        parse_chat(chat(max_tokens=value), ROSTER)
    assert (caught.value.status, caught.value.code) == (400, "invalid_request")
    assert "'max_tokens' must be a positive integer" in caught.value.message


@pytest.mark.parametrize(
    ("extra", "accepted"),
    [
        ({"response_format": None}, True),
        ({"response_format": {"type": "text"}}, True),
        ({"response_format": {"type": "json_object"}}, False),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, False),
        ({"response_format": "json"}, False),
        ({"tools": TOOLS}, False),
        ({"tools": TOOLS, "tool_choice": "auto"}, False),
        ({"tools": TOOLS, "tool_choice": "none"}, True),  # no tool can be called
        ({"functions": [{"name": "f"}], "function_call": "none"}, True),
        ({"functions": [{"name": "f"}]}, False),
        ({"n": 2}, False),
        ({"n": True}, False),  # JSON's true is not the number 1
        ({"n": 1, "temperature": 0.2, "seed": 1, "user": "u"}, True),
    ],
)  # fmt: skip
def test_parameters_a_text_answer_cannot_honour_are_refused(
    extra: dict[str, Any], accepted: bool
) -> None:
    if accepted:
        parse_chat(chat(**extra), ROSTER)
        return
    with pytest.raises(ApiError) as caught:
        parse_chat(chat(**extra), ROSTER)
    assert (caught.value.status, caught.value.code) == (400, "unsupported_parameter")


CALL = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}


@pytest.mark.parametrize(
    ("earlier", "transcript"),
    [
        # an agent's history: a tool call, its result, then the next question
        ([{"role": "assistant", "content": None, "tool_calls": [CALL]},
          {"role": "tool", "tool_call_id": "c1", "content": "42"}],
         '<<<assistant>>>\ncalled lookup({"q": 1})\n<<<end assistant>>>\n'
         "<<<tool>>>\n42\n<<<end tool>>>"),
        ([{"role": "assistant", "content": "Let me look.", "tool_calls": [CALL, CALL]}],
         '<<<assistant>>>\nLet me look.\ncalled lookup({"q": 1})\ncalled lookup({"q": 1})\n'
         "<<<end assistant>>>"),
        # the legacy function role, and arguments given as an object
        ([{"role": "assistant", "content": None,
           "tool_calls": [{"function": {"name": "f", "arguments": {"a": "é"}}}, "junk"]},
          {"role": "function", "name": "f", "content": "done"}],
         '<<<assistant>>>\ncalled f({"a": "é"})\n<<<end assistant>>>\n'
         "<<<function>>>\ndone\n<<<end function>>>"),
    ],
)  # fmt: skip
def test_tool_turns_of_the_history_become_transcript(
    earlier: list[dict[str, Any]], transcript: str
) -> None:
    prompt = render_messages([*earlier, {"role": "user", "content": "and now?"}])
    assert prompt == (
        f"Earlier conversation (oldest first):\n{transcript}\n\nCurrent request:\nand now?"
    )


def limited(backend: str, retry_after: float | None) -> BackendError:
    return BackendError(backend, "rate limited", kind="rate_limit", status=429,
                        retryable=True, retry_after=retry_after)  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "status", "code", "headers"),
    [
        (NoAnswerError([limited("a", 2.5), limited("b", 7.0)]), 429, "rate_limited",
         {"retry-after": "7"}),
        (NoAnswerError([limited("a", None)]), 429, "rate_limited", {}),
        (NoAnswerError([limited("a", 0.2)]), 429, "rate_limited", {"retry-after": "1"}),
        # one candidate failed otherwise: waiting would not help it
        (NoAnswerError([limited("a", 2.0), BackendError("b", "server error", status=500)]),
         502, "backends_failed", {"x-should-retry": "false"}),
        (NoAnswerError([]), 502, "backends_failed", {"x-should-retry": "false"}),
        (MissingKeyError("a", "A_KEY"), 503, "backend_not_configured",
         {"x-should-retry": "false"}),
    ],
)  # fmt: skip
def test_failed_runs_answer_with_the_status_and_headers_a_client_acts_on(
    exc: BaseException, status: int, code: str, headers: dict[str, str]
) -> None:
    err = error_for(exc)
    assert (err.status, err.code, err.headers) == (status, code, headers)


def answered(*finishes: str | None, answer: str = "the draft") -> Run:
    run = Run(prompt="x")
    run.turns = [Turn(i, Call("orchestrator", "o", "m"), text="the draft", finish_reason=f)
                 for i, f in enumerate(finishes)]  # fmt: skip
    run.answer = answer
    if answer == "ruled":
        run.review = Review(reviewers=["r"], answer=answer)
    return run


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        (answered("stop"), "stop"),
        (answered("tool_calls", "stop"), "stop"),
        (answered("tool_calls", "length"), "length"),
        (answered(models.REPEATED), "length"),
        (answered("length", "stop"), "stop"),  # an earlier turn's cut is not the answer's
        (answered("length", answer="ruled"), "stop"),  # a ruling rewrote the answer
        (answered("length", answer=" the draft\n"), "length"),  # a review let it stand
        (answered("length", answer="result 1\n\nresult 2"), "stop"),  # the sub-task results
        (answered(None), "stop"),
        (answered(), "stop"),
    ],
)  # fmt: skip
def test_an_answer_cut_short_finishes_with_length(run: Run, reason: str) -> None:
    assert finish_reason(run) == reason


@pytest.mark.parametrize(
    ("content", "code", "fragment"),
    [
        ([{"type": "text", "text": 5}], "invalid_request", "messages[0].content[0].text must be"),
        ([1], "invalid_request", "messages[0].content[0] must be an object with a string 'type'"),
        ([{"text": "x"}], "invalid_request", "with a string 'type'"),
        ([{"type": "image_url"}], "unsupported_content", "content type 'image_url' is not"),
    ],
)  # fmt: skip
def test_content_parts_say_what_is_wrong_with_them(content: Any, code: str, fragment: str) -> None:
    with pytest.raises(ApiError) as caught:
        render_messages([{"role": "user", "content": content}])
    assert (caught.value.status, caught.value.code) == (400, code)
    assert fragment in caught.value.message
