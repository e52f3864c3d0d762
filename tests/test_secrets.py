"""API keys never leak, not even in part: masking, and every output a failed call reaches.

A backend that quotes the key it was sent in its error message (the simulator's
``echo_auth=1``) is called through the CLI, ``show``, the ledger file, ``backends check``,
``serve`` and the MCP bridge; none of them may show a run of 8 or more key characters.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tanglebrain import otel
from tanglebrain.errors import BackendError
from tanglebrain.mcp import Bridge
from tanglebrain.models._errors import scrub, to_backend_error
from tanglebrain.redact import MASK, MIN_RUN, Redactor, redact
from tanglebrain.roster import parse
from tanglebrain.serve import ServeConfig, create_app
from tanglebrain.sim import Simulator
from tanglebrain.trace import Attempt, Call, Run, Subtask, ToolCall, Turn
from tests.helpers import cli_env, run_cli

# A key longer than the 160-character cut of error reasons, and a 40-character key that
# the cut lands inside (the padding of the model string puts it there).
KEY164 = "sk-proj-" + ("Q9W8E7R6T5Y4U3I2O1P0" * 8)[:156]
KEY40 = "sk-" + "A1B2C3D4E5" * 3 + "XYZ0123"
CASES = [(KEY164, ""), (KEY40, ",id=" + "p" * 28)]
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"  # no lowercase: MASK cannot look like a key


def leaked(text: str, key: str) -> int:
    """The length of the longest run of ``key``'s characters that ``text`` contains."""
    best = 0
    for start in range(len(key)):
        while start + best < len(key) and key[start : start + best + 1] in text:
            best += 1
    return best


def naive(text: str, secrets: list[str]) -> str:
    """The masking rule, spelled out: cover every window of MIN_RUN key characters."""
    grams = {s[i : i + MIN_RUN] for s in secrets for i in range(len(s) - MIN_RUN + 1)}
    covered = [False] * len(text)
    for p in range(len(text) - MIN_RUN + 1):
        if text[p : p + MIN_RUN] in grams:
            covered[p : p + MIN_RUN] = [True] * MIN_RUN
    out, i = [], 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            out.append(MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# --- the masking function -------------------------------------------------------------

keys = st.text(ALPHABET, min_size=MIN_RUN, max_size=200)
noise = st.text("abcdefghij klmnop.:{}\"'", max_size=40)


@st.composite
def quoting(draw: st.DrawFn) -> tuple[str, str]:
    """A key and a text quoting pieces of it (whole, cut, repeated) amid other text."""
    key = draw(keys)
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        parts.append(draw(noise))
        i = draw(st.integers(0, len(key) - 1))
        j = draw(st.integers(i, len(key)))
        parts.append(key[i:j])
    return key, "".join(parts) + draw(noise)


@given(quoting())
@example((KEY164, f"Incorrect API key provided: {KEY164[:151]}…"))
def test_no_run_of_eight_key_characters_survives(case: tuple[str, str]) -> None:
    key, text = case
    out = redact(text, [key])
    assert leaked(out, key) < MIN_RUN
    assert out == naive(text, [key])  # and nothing else is touched


@given(st.lists(keys, min_size=1, max_size=3), st.text(max_size=300))
def test_the_fast_scan_equals_the_rule(secrets: list[str], text: str) -> None:
    assert redact(text, secrets) == naive(text, secrets)


@given(keys, noise)
def test_text_without_key_runs_is_unchanged(key: str, text: str) -> None:
    assert redact(text, [key]) == text


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("key ABCDEFGH here", ["ABCDEFGH"], f"key {MASK} here"),
        ("ABCDEFGHABCDEFGH", ["ABCDEFGH"], MASK),  # touching runs: one mask
        ("key ABCDEFG here", ["ABCDEFGHIJ"], "key ABCDEFG here"),  # 7 characters: kept
        ("short SECRET1 and SECRET", ["SECRET1"], f"short {MASK} and SECRET"),  # whole only
        ("none of these", ["none", "x", "", None], "none of these"),  # placeholders
        ("", ["ABCDEFGHIJ"], ""),
    ],
)
def test_masking_table(text: str, secrets: list[str | None], expected: str) -> None:
    assert redact(text, secrets) == expected


def test_a_large_text_is_scanned_in_linear_time() -> None:
    # 4 MB of log text with the key at both ends: the scan must not be per character
    # in Python with a full lookup each, but it must still find both.
    text = KEY164[:20] + ("GET /v1/items status=200 latency_ms=12\n" * 100_000) + KEY164[-20:]
    out = Redactor([KEY164])(text)
    assert out.startswith(MASK) and out.endswith(MASK) and leaked(out, KEY164) < MIN_RUN


# --- error reasons --------------------------------------------------------------------


@given(st.integers(0, 250), st.sampled_from([KEY40, KEY164]), st.sampled_from([400, 403, 500]))
def test_a_key_is_masked_before_the_reason_is_cut(pad: int, key: str, status: int) -> None:
    name = "InternalServerError" if status >= 500 else "BadRequestError"
    message = f'{{"error": {{"message": "{"x" * pad} Incorrect API key provided: {key}"}}}}'
    exc = type(name, (Exception,), {})(f"litellm.{name}: OpenAIException - {message}")
    exc.status_code = status  # type: ignore[attr-defined]
    err = to_backend_error("b", exc, timeout=5, secrets=[key])
    assert leaked(str(err), key) < MIN_RUN and len(err.reason) <= 175


def test_scrub_masks_runs_of_a_key_in_an_error_built_elsewhere() -> None:
    cut = BackendError("b", f"denied: {KEY40[:13]}…", status=403)
    assert scrub(cut, KEY40).reason == f"denied: {MASK}…"
    assert to_backend_error("b", cut, timeout=5, secrets=[KEY40]).reason == f"denied: {MASK}…"


# --- every output of a failed call ----------------------------------------------------


def roster_text(base_url: str, spec: str) -> str:
    return (
        "[settings]\nmax_attempts = 1\n\n"
        f'[[backend]]\nid = "leaky"\nmodel = "openai/{spec}"\napi_base = "{base_url}"\n'
        'api_key_env = "TB_LEAKY_KEY"\ngood_at = ["grunt"]\ncost = 1\ncan_orchestrate = true\n'
        "price = { input = 1.0, output = 2.0 }\n"
    )


@pytest.mark.parametrize("status", [400, 403, 500])
@pytest.mark.parametrize(("key", "pad"), CASES, ids=["164-char key", "40-char key at the cut"])
def test_cli_ledger_and_check_never_show_the_key(
    tmp_path: Path, sim_thread: Simulator, key: str, pad: str, status: int
) -> None:
    spec = f"fail:status={status},echo_auth=1{pad}"
    roster = tmp_path / "roster.toml"
    roster.write_text(roster_text(sim_thread.base_url, spec))
    env = cli_env(tmp_path, TB_LEAKY_KEY=key)
    run = run_cli(["--roster", str(roster), "say hello"], tmp_path, env=env)
    assert run.code == 1 and "credentials sent" in run.stderr  # the backend did echo it
    as_json = run_cli(["--roster", str(roster), "--json", "say hello"], tmp_path, env=env)
    show = run_cli(["show", "latest"], tmp_path, env=env)
    check = run_cli(["--roster", str(roster), "backends", "check"], tmp_path, env=env)
    assert show.code == 0 and check.code != 0 and "leaky" in check.stdout + check.stderr
    files = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("runs.db*"))
    outputs = {
        "stderr": run.stderr + run.stdout,
        "--json": as_json.stdout + as_json.stderr,
        "show": show.stdout + show.stderr,
        "backends check": check.stdout + check.stderr,
        "runs.db": files.decode("utf-8", "replace"),
    }
    leaks = {where: leaked(text, key) for where, text in outputs.items()}
    assert all(n < MIN_RUN for n in leaks.values()), leaks


@pytest.mark.parametrize(("key", "pad"), CASES, ids=["164-char key", "40-char key at the cut"])
async def test_serve_and_mcp_bodies_never_show_the_key(
    tmp_path: Path, sim: Simulator, key: str, pad: str
) -> None:
    spec = f"fail:status=500,echo_auth=1{pad}"
    roster = tmp_path / "roster.toml"
    roster.write_text(roster_text(sim.base_url, spec))
    env = {"TB_LEAKY_KEY": key}
    app = create_app(ServeConfig(parse(roster.read_text(), roster), env))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://serve"
    ) as client:
        resp = await client.post(
            "/v1/chat/completions",
            json={"model": "leaky", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert resp.status_code == 502 and "credentials sent" in resp.text
    result, failed = await Bridge(roster, env, tmp_path).call(
        "delegate", {"prompt": "hi", "backend": "leaky"}
    )
    body = json.dumps(result)
    assert failed and "credentials sent" in body
    leaks = {"serve": leaked(resp.text, key), "mcp": leaked(body, key)}
    assert all(n < MIN_RUN for n in leaks.values()), leaks


def test_otel_attributes_events_and_statuses_never_show_the_key() -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    export = pytest.importorskip("opentelemetry.sdk.trace.export")
    memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    cut = f"Incorrect API key provided: {KEY40[:13]}…"
    run = Run(prompt="p")
    attempt = Attempt("leaky", "openai/x", started=run.started, status="error", error=cut)
    sub = Subtask(0, f"task quoting {KEY40}", "p", status="error", error=cut,
                  calls=[Call("subtask", "leaky", "openai/x", [attempt])])  # fmt: skip
    tool = ToolCall("t1", "delegate", "{}", [sub], error=cut)
    run.turns.append(Turn(0, Call("orchestrator", "leaky", "openai/x", [attempt]), [tool]))
    run.error = cut
    run.finish("error")
    exporter = memory.InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    otel.record_spans(run, provider, secrets=[KEY40])
    texts = []
    for span in exporter.get_finished_spans():
        texts += [str(v) for v in span.attributes.values()]
        texts += [str(v) for e in span.events for v in e.attributes.values()]
        texts.append(span.status.description or "")
    assert any(MASK in t for t in texts)
    assert leaked("\n".join(texts), KEY40) < MIN_RUN
