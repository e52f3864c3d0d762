import json
from types import SimpleNamespace
from typing import Any

import pytest

from tanglebrain import results
from tanglebrain.results import CallError, ManyResult, SubtaskResult, ToolResult

OK = SubtaskResult("ok", "fast", "an answer")
CUT = SubtaskResult("ok", "fast", "half", truncated=True, note="the text was cut")
NOTED = SubtaskResult("ok", "fast", "é", note="ignored unknown task tag 'x'")
FAILED = SubtaskResult("error", "slow", error="every candidate failed")
NO_FIT = SubtaskResult("no_fit", None, error="no enabled backend can take this sub-task")

# The wire shapes of docs/contracts.md, byte for byte: key order, omitted keys, UTF-8.
CASES: list[tuple[str, ToolResult, str]] = [
    ("ok", OK, '{"status": "ok", "backend": "fast", "text": "an answer"}'),
    (
        "truncated",
        CUT,
        '{"status": "ok", "backend": "fast", "text": "half", "truncated": true, '
        '"note": "the text was cut"}',
    ),
    (
        "note only",
        NOTED,
        '{"status": "ok", "backend": "fast", "text": "é", '
        '"note": "ignored unknown task tag \'x\'"}',
    ),
    (
        "error",
        FAILED,
        '{"status": "error", "backend": "slow", "error": "every candidate failed"}',
    ),
    (
        "no fit",
        NO_FIT,
        '{"status": "no_fit", "backend": null, '
        '"error": "no enabled backend can take this sub-task"}',
    ),
    ("call error", CallError("bad"), '{"status": "error", "backend": null, "error": "bad"}'),
    (
        "many",
        ManyResult((OK, FAILED)),
        '[{"index": 0, "status": "ok", "backend": "fast", "text": "an answer"}, '
        '{"index": 1, "status": "error", "backend": "slow", "error": "every candidate failed"}]',
    ),
    (
        "digested",
        SubtaskResult("ok", "b", "d", digest_of_bytes=9),
        '{"status": "ok", "backend": "b", "text": "d", "digest_of_bytes": 9}',
    ),
]


@pytest.mark.parametrize(("result", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_result_form_has_its_wire_json(result: ToolResult, expected: str) -> None:
    assert results.dumps(result) == expected
    assert json.dumps(result.as_json(), ensure_ascii=False) == expected


def test_values_are_frozen_and_slotted() -> None:
    with pytest.raises(AttributeError):
        OK.text = "x"  # type: ignore[misc]
    assert not hasattr(OK, "__dict__")


def test_a_result_that_fits_is_serialized_once_and_returned_as_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []

    def dumps(value: Any, **kwargs: Any) -> str:
        calls.append(value)
        return json.dumps(value, **kwargs)

    monkeypatch.setattr(results, "json", SimpleNamespace(dumps=dumps))
    many = ManyResult((OK, FAILED))
    whole = results.dumps(many)
    assert results.fit_result(many, 10_000, whole) is whole
    assert results.fit_result(many, 10_000) == whole
    assert len(calls) == 2  # one per fit_result path above, none more


def test_a_bulky_result_keeps_its_structure_and_digests_only_long_texts() -> None:
    bulky = "".join(f"INFO step {i} value={i * 7} done\n" for i in range(2000))
    many = ManyResult((SubtaskResult("ok", "a", bulky), FAILED, SubtaskResult("ok", "b", "short")))
    whole = results.dumps(many)
    fitted = results.fit_result(many, 4000, whole)
    assert fitted is not whole and len(fitted.encode()) < len(whole.encode())
    entries = json.loads(fitted)
    assert [e["index"] for e in entries] == [0, 1, 2]
    assert list(entries[0]) == ["index", "status", "backend", "text", "digest_of_bytes"]
    assert entries[0]["digest_of_bytes"] == len(bulky.encode())
    assert entries[1] == FAILED.as_json(1)
    assert entries[2] == {"index": 2, "status": "ok", "backend": "b", "text": "short"}
    single = results.fit_result(SubtaskResult("ok", "a", bulky), 4000)
    assert list(json.loads(single)) == ["status", "backend", "text", "digest_of_bytes"]


@pytest.mark.parametrize("result", [CallError("x" * 5000), ManyResult((FAILED,) * 200)])
def test_a_result_without_text_is_never_digested(result: ToolResult) -> None:
    whole = results.dumps(result)
    assert results.fit_result(result, 100, whole) is whole
