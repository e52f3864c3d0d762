"""Tool calls: the text parser, the stream gate, and the arguments the history repeats."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tanglebrain.toolcalls import Parsed, StreamGate, TextCall, echoed_arguments, parse

OFFERED = frozenset({"delegate", "delegate_many"})
TASKS = {"tasks": [{"prompt": "translate 'cat' into French", "task": "language"}]}
MANY = TextCall("delegate_many", json.dumps(TASKS))
ONE = TextCall("delegate", json.dumps({"prompt": "x"}))

# What Qwen2.5-Coder-1.5B wrote through llama.cpp's stock chat template (first turn).
REAL_FENCED = (
    '```json\n{\n  "name": "delegate_many",\n  "arguments": {\n    "tasks": [\n      {\n'
    '        "prompt": "translate \'cat\' into French",\n        "task": "language"\n'
    "      }\n    ]\n  }\n}\n```"
)
# ... inside the <tools> tags of the prompt's tool list, echoed, in OpenAI's shape.
REAL_TOOLS_TAGS = (
    '<tools>\n{"type": "function", "function": {"name": "delegate_many", "arguments": '
    f"{json.dumps(TASKS)}}}}}\n</tools>"
)
# ... as a tag with a JSON attribute (and a stray brace).
REAL_TAG = (
    "<tools>\n  <delegate_many tasks=[\n    "
    '{"prompt": "translate \'cat\' into French", "task": "language"}\n  ]}\n</tools>'
)
# ... after echoing a tool's definition from the prompt (which is not a call).
REAL_ECHO = (
    '<tools>\n{"type": "function", "function": {"name": "delegate_many", "description": "Run '
    "several independent sub-tasks at once; one result per task, in order (at most 12 sub-tasks"
    ' per run).", "parameters": {"type": "object", "properties": {"tasks": {"type": "array", '
    '"items": {"type": "object", "properties": {"prompt": {"type": "string", "description": "the'
    ' sub-task, complete in itself: the specialist sees nothing else"}, "task": {"type": '
    '"string", "description": "a good_at tag from the menu", "enum": ["facts", "language", '
    '"math"]}}, "required": ["prompt"], "additionalProperties": false}, "minItems": 1}}, '
    '"required": ["tasks"], "additionalProperties": false}}}\n</tools>'
)
# ... and on a later turn, as bare JSON on one line.
REAL_BARE = (
    '{"name": "delegate_many", "arguments": {"tasks": [{"prompt": "translate \'cat\' into '
    'French", "task": "language"}]}}\n'
)
TASKS_JSON = json.dumps(TASKS)
CALL_X = {"name": "delegate", "arguments": {"prompt": "x"}}
OPENAI = {"type": "function", "function": {"name": "delegate", "arguments": '{"prompt": "x"}'}}

SHAPES = [
    ("real-fenced", REAL_FENCED, [MANY], ""),
    ("real-bare", REAL_BARE, [MANY], ""),
    ("real-tools-tags", REAL_TOOLS_TAGS, [MANY], ""),
    ("real-attribute-tag", REAL_TAG, [MANY], ""),
    ("real-echo-then-fence", REAL_ECHO + "\n\n" + REAL_FENCED, [MANY], ""),
    ("real-echo-alone", REAL_ECHO, [], ""),
    ("tool_call-tag",
     f'<tool_call>\n{{"name": "delegate_many", "arguments": {TASKS_JSON}}}\n</tool_call>',
     [MANY], ""),
    ("parameters", f'{{"name": "delegate_many", "parameters": {TASKS_JSON}}}', [MANY], ""),
    ("arguments-as-string",
     json.dumps({"name": "delegate_many", "arguments": TASKS_JSON}), [MANY], ""),
    ("openai-function",
     json.dumps(OPENAI), [TextCall("delegate", '{"prompt": "x"}')], ""),
    ("spread-arguments", '{"name": "delegate", "prompt": "x"}', [ONE], ""),
    ("keyed-by-name", '{"delegate": {"prompt": "x"}}', [ONE], ""),
    ("list-of-calls", json.dumps([CALL_X] * 2), [ONE, ONE], ""),
    ("tool_calls-key", json.dumps({"tool_calls": [CALL_X]}), [ONE], ""),
    ("several-fences",
     f"I will split it.\n```json\n{json.dumps(CALL_X)}\n```\n```json\n{REAL_BARE}```",
     [ONE, MANY], "I will split it.\n\n"),
    ("unclosed-tag", '<tool_call>\n{"name": "delegate", "arguments": {"prompt": "x"}}', [ONE], ""),
    ("prose-around-bare", 'Sure. {"name": "delegate", "arguments": {"prompt": "x"}} Done.',
     [ONE], "Sure.  Done."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "calls", "prose"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES]
)
def test_shapes_of_text_calls(text: str, calls: list[TextCall], prose: str) -> None:
    parsed = parse(text, OFFERED)
    assert list(parsed.calls) == calls
    assert parsed.prose == prose and not parsed.broken


NOT_CALLS = [
    ("plain prose", "The capital of France is Paris."),
    ("json about something else", 'The record is {"name": "Paris", "arguments": {"a": 1}}.'),
    ("tool not offered", '```json\n{"name": "search", "arguments": {"q": "x"}}\n```'),
    ("name only in prose", "I could delegate this, but it is simple: 4."),
    ("code answer", '```python\nprint({"delegate": 1})\n```'),
    ("empty", ""),
    ("a tag named like a tool", "Wrap it in <delegate> tags, or use <div class='x'>."),
]


@pytest.mark.parametrize("text", [t for _, t in NOT_CALLS], ids=[i for i, _ in NOT_CALLS])
def test_prose_stays_prose(text: str) -> None:
    assert parse(text, OFFERED) == Parsed((), text)


BROKEN = [
    # cut at the output cap in the middle of the call
    ("cut", 'Answer: 4.\n```json\n{"name": "delegate_many", "arguments": {"tasks": [{"pro',
     "Answer: 4.\n"),
    ("trailing comma", '```json\n{"name": "delegate", "arguments": {"prompt": "x",}}\n```\nok',
     "\nok"),
    ("tag", '<tool_call>\n{"name": "delegate", "arguments": {prompt: x}}\n</tool_call>', ""),
    ("bare", 'Here: {"name": "delegate", "arguments": {prompt: x}}', "Here: "),
    ("attribute tag cut", "<tools>\n  <delegate_many tasks=[\n    {\"prompt\": \"What is", ""),
]  # fmt: skip


@pytest.mark.parametrize(("text", "prose"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_call_is_flagged_and_kept_out_of_the_prose(text: str, prose: str) -> None:
    parsed = parse(text, OFFERED)
    assert parsed.calls == () and parsed.broken and parsed.prose == prose


def test_only_offered_tools_count() -> None:
    text = '```json\n{"name": "delegate", "arguments": {"prompt": "x"}}\n```'
    assert parse(text, {"delegate_many"}) == Parsed((), text)
    assert parse(text, ()) == Parsed((), text)


def deltas(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


def gate_run(text: str, cuts: list[int]) -> tuple[str, Parsed]:
    shown: list[str] = []
    gate = StreamGate(OFFERED, shown.append)
    for delta in deltas(text, cuts):
        gate.feed(delta)
    parsed = gate.finish(text)
    return "".join(shown), parsed


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Paris, Tokyo, Rome.", "Paris, Tokyo, Rome."),
        ("Paris, Tokyo, Rome.\n" + REAL_FENCED, "Paris, Tokyo, Rome.\n"),
        (REAL_BARE, ""),  # its prose is blank: nothing is shown
        ("Use `len` here.", "Use `len` here."),  # held at the backtick, shown at the end
    ],
)
def test_stream_gate_never_shows_a_call(text: str, shown: str) -> None:
    got, parsed = gate_run(text, [1, 7, 20, 33])
    assert got == shown and parsed.prose.strip() == shown.strip()


def test_stream_gate_without_tools_passes_everything_at_once() -> None:
    shown: list[str] = []
    gate = StreamGate((), shown.append)
    gate.feed(REAL_FENCED)
    assert shown == [REAL_FENCED] and gate.finish(REAL_FENCED).prose == REAL_FENCED


# --- open-ended input -------------------------------------------------------------------------

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSONISH = st.text(alphabet=st.sampled_from(list('{}[]":,` \n<>/abcnmeprotl_x0123')), max_size=300)
NAMELESS = st.text(max_size=400).filter(lambda t: not any(n in t for n in OFFERED))
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
ARGS = st.dictionaries(st.text(min_size=1, max_size=10), VALUES, max_size=4)


@FAST
@given(st.one_of(st.text(max_size=400), JSONISH, JSONISH.map(lambda t: t + "delegate_many")))
def test_parse_never_raises(text: str) -> None:
    parsed = parse(text, OFFERED)
    assert isinstance(parsed.prose, str)
    assert all(c.name in OFFERED for c in parsed.calls)


@FAST
@given(NAMELESS)
def test_text_without_an_offered_name_is_never_a_call(text: str) -> None:
    # Prose stays as it is; only a text of nothing but blanks or empty tags has none.
    assert parse(text, OFFERED) in (Parsed((), text), Parsed((), ""))


@pytest.mark.parametrize("text", ["<tools>\n\n</tools>\n", "```json\n```", " \n", ""])
def test_empty_tool_tags_are_no_prose(text: str) -> None:
    # The stock template's forced last turn: "<tools>\n\n</tools>\n" and nothing else.
    assert parse(text, OFFERED) == Parsed((), "")


@FAST
@given(
    st.sampled_from(sorted(OFFERED)),
    ARGS,
    st.sampled_from(["fence", "tag", "bare", "parameters"]),
    st.text(alphabet=st.characters(blacklist_characters="{}[]`<\"'"), max_size=40),  # prose
)
def test_a_written_call_round_trips(
    name: str, args: dict[str, object], shape: str, before: str
) -> None:
    # Arguments with a "properties" object are the tool's schema echoed, never a call.
    assume(not isinstance(args.get("properties"), dict))
    key = "parameters" if shape == "parameters" else "arguments"
    body = json.dumps({"name": name, key: args})
    text = {"fence": f"```json\n{body}\n```", "tag": f"<tool_call>\n{body}\n</tool_call>"}.get(
        shape, body
    )
    parsed = parse(before + text, OFFERED)
    assert parsed.calls == (TextCall(name, json.dumps(args, ensure_ascii=False)),)
    assert parsed.prose == (before if before.strip() else "") and not parsed.broken


@FAST
@given(st.text(max_size=300), st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_the_gate_shows_what_parse_calls_prose(text: str, cuts: list[int]) -> None:
    shown, parsed = gate_run(text, cuts)
    # What is shown is the prose; blank prose is not shown at all.
    assert shown == (parsed.prose if parsed.prose.strip() else "")
    if not any(n in text for n in OFFERED):
        assert parsed.prose == text


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ('{"prompt": "x"}', '{"prompt": "x"}'),  # byte for byte, spacing included
        ('{"tasks":[{"prompt":"a"}]}', '{"tasks":[{"prompt":"a"}]}'),
        ('{"tasks": [{"prompt": "a"', "{}"),  # cut short (as llama.cpp refuses it)
        ("", "{}"),  # a call with no arguments at all
        ("[1, 2]", "{}"),  # JSON, but not an object
        ('"x"', "{}"),
        ("null", "{}"),
        ('{"n": NaN}', "{}"),  # Python's JSON, not JSON: llama.cpp refuses it
        ('{"n": Infinity}', "{}"),
        ("[" * 100_000 + "]" * 100_000, "{}"),  # too deep for the decoder
    ],
)
def test_echoed_arguments(sent: str, echoed: str) -> None:
    assert echoed_arguments(sent) == echoed


@given(st.text(max_size=60) | st.dictionaries(st.text(max_size=8), st.integers()).map(json.dumps))
def test_echoed_arguments_are_always_a_json_object(sent: str) -> None:
    out = echoed_arguments(sent)
    assert isinstance(json.loads(out), dict)
    assert out == sent or out == "{}"
