"""Lone surrogates: mended where text is encoded, relayed as escapes by serve."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tanglebrain.cli.streams import StdoutSink
from tanglebrain.serve._wire import json_bytes
from tanglebrain.surrogates import mend, mended

SMILE = "\U0001f600"  # one character, two UTF-16 halves
HIGH, LOW = "\ud83d", "\ude00"


@pytest.mark.parametrize(
    ("text", "want"),
    [("plain é", "plain é"), (HIGH + LOW, SMILE), (f"a {HIGH} b", "a \ufffd b"),
     (LOW + HIGH, "\ufffd\ufffd"), ("\udcff", "\ufffd"), ("", "")],
)  # fmt: skip
def test_mend(text: str, want: str) -> None:
    assert mend(text) == want


# Any code points, surrogates often (st.characters never makes them).
code_point = st.one_of(st.integers(0xD800, 0xDFFF), st.integers(0, 0x10FFFF))


@given(st.lists(code_point).map(lambda points: "".join(map(chr, points))))
def test_anything_mended_encodes_and_valid_text_is_unchanged(text: str) -> None:
    fixed = mend(text)
    fixed.encode("utf-8")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    assert fixed == text


def test_mended_reaches_every_string_of_a_message() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "x" + HIGH}]},
                {"role": "tool", "tool_call_id": HIGH, "content": ("a", LOW)}]  # fmt: skip
    assert json.dumps(mended(messages), ensure_ascii=False).encode()
    assert mended(messages)[1]["content"] == ("a", "\ufffd")


def test_serve_relays_a_half_pair_as_its_escape() -> None:
    data = json_bytes({"content": "a" + HIGH})
    assert data == b'{"content": "a\\ud83d"}'
    assert json.loads(data)["content"] == "a" + HIGH  # what the backend sent


def stdout_bytes(monkeypatch: pytest.MonkeyPatch, *deltas: str) -> bytes:
    raw = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(raw, encoding="utf-8"))
    sink = StdoutSink()
    for delta in deltas:
        sink.write(delta)
    sink.finish()
    return raw.getvalue()


def test_stdout_joins_a_pair_split_across_deltas(monkeypatch: pytest.MonkeyPatch) -> None:
    assert stdout_bytes(monkeypatch, "smile " + HIGH, LOW + " ok") == f"smile {SMILE} ok\n".encode()


@pytest.mark.parametrize("deltas", [("a " + HIGH,), ("a " + HIGH, " b"), ("a \udcff b",)])
def test_stdout_writes_a_stray_half_as_a_replacement(
    monkeypatch: pytest.MonkeyPatch, deltas: tuple[str, ...]
) -> None:
    out = stdout_bytes(monkeypatch, *deltas).decode("utf-8")
    assert "\ufffd" in out and out.endswith("\n") and out.count("\n") == 1
