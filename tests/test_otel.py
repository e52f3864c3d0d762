"""OpenTelemetry export: GenAI-convention spans from the finished run tree."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tanglebrain import otel
from tanglebrain.sim import Simulator
from tanglebrain.trace import Run
from tests.helpers import backend_toml, cli_env, run_cli, run_process, write_roster
from tests.test_trace import fanout_run

try:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    HAVE_SDK = True
except ImportError:  # the optional extra is not installed
    HAVE_SDK = False

needs_sdk = pytest.mark.skipif(not HAVE_SDK, reason="needs tanglebrain[otel]")


def spans_of(run: Run) -> list[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.record_spans(run, provider)
    return list(exporter.get_finished_spans())


def ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


@needs_sdk
async def test_spans_mirror_the_tree(sim: Simulator) -> None:
    trace = await fanout_run(sim)
    spans = spans_of(trace)
    by_id = {s.context.span_id: s for s in spans}

    def parent(span: Any) -> Any:
        return by_id[span.parent.span_id] if span.parent else None

    names = sorted(s.name for s in spans)
    assert names.count("chat orchestrator:fanout=4") == 2
    assert names.count("chat fail:status=500") == 2 and names.count("chat worker") == 4
    assert names.count("execute_tool delegate_many") == 1 and len(spans) == 16
    root = next(s for s in spans if s.parent is None)
    assert root.name == "invoke_agent tanglebrain"
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["tanglebrain.run.id"] == trace.id
    assert (root.start_time, root.end_time) == (ns(trace.started), ns(trace.ended or 0))
    subtask_spans = sorted((s for s in spans if s.name.startswith("subtask ")),
                           key=lambda s: s.attributes["tanglebrain.subtask.index"])  # fmt: skip
    assert [s.attributes["tanglebrain.subtask.index"] for s in subtask_spans] == [0, 1, 2, 3]
    assert [s.attributes["tanglebrain.failed_over"] for s in subtask_spans] == [
        True, False, True, False]  # fmt: skip
    for span, sub in zip(subtask_spans, trace.subtasks(), strict=True):
        assert parent(span).name == "execute_tool delegate_many"
        assert parent(parent(span)).name == "turn 0" and parent(parent(parent(span))) is root
        chats = [s for s in spans if s.parent and s.parent.span_id == span.context.span_id]
        assert [c.attributes["tanglebrain.backend"] for c in chats] == [
            c.backend for c in sub.calls
        ]
        for chat, call in zip(chats, sub.calls, strict=True):
            attrs = chat.attributes
            assert attrs["gen_ai.operation.name"] == "chat"
            assert attrs["gen_ai.provider.name"] == "openai"
            assert attrs["gen_ai.request.model"] == call.model.split("/", 1)[1]
            assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (
                call.tokens)  # fmt: skip
            assert (chat.start_time, chat.end_time) == (ns(call.started or 0), ns(call.ended or 0))
            assert len(chat.events) == len(call.attempts)
            if call.ok:
                assert "error.type" not in attrs
            else:
                assert attrs["error.type"] == "500" and not chat.status.is_ok
    turns = [s for s in spans if s.name.startswith("turn ")]
    assert all(parent(t) is root for t in turns) and len(turns) == 2


@needs_sdk
async def test_export_run_hands_every_span_to_the_exporter(sim: Simulator) -> None:
    trace = await fanout_run(sim)
    exporter = InMemorySpanExporter()
    assert otel.export_run(trace, exporter) is True
    assert len(exporter.get_finished_spans()) == 16


def test_provider_names() -> None:
    assert otel.provider_and_model("anthropic/claude-x") == ("anthropic", "claude-x")
    assert otel.provider_and_model("bedrock/a/b") == ("aws.bedrock", "a/b")
    assert otel.provider_and_model("gpt-4o") == ("_OTHER", "gpt-4o")


def test_nothing_configured_nothing_done() -> None:
    assert otel.export_if_configured(Run(prompt="x"), {}) is None


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.bodies.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    bodies: ClassVar[list[tuple[str, bytes]]] = []
    handler = type("Handler", (_Receiver,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


def echo_roster(tmp_path: Path, sim: Simulator) -> None:
    write_roster(tmp_path / "roster.toml", backend_toml("cheap", "echo", sim.base_url))


@needs_sdk
def test_cli_exports_over_otlp_http(
    tmp_path: Path, sim_thread: Simulator, collector: tuple[str, list[tuple[str, bytes]]]
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    endpoint, bodies = collector
    echo_roster(tmp_path, sim_thread)
    out = run_cli(["hello otel"], tmp_path,
                  env=cli_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint))  # fmt: skip
    assert out.code == 0 and out.stdout == "hello otel\n"
    assert "warning" not in out.stderr, out.stderr
    assert [path for path, _ in bodies] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(bodies[0][1])
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.name for s in spans) == ["chat echo", "invoke_agent tanglebrain", "turn 0"]
    service = {a.key: a.value.string_value for a in request.resource_spans[0].resource.attributes}
    assert service["service.name"] == "tanglebrain"


@needs_sdk
def test_unreachable_collector_is_one_warning(tmp_path: Path, sim_thread: Simulator) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    echo_roster(tmp_path, sim_thread)
    env = cli_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
                  OTEL_EXPORTER_OTLP_TIMEOUT="1")  # fmt: skip
    out = run_cli(["still answered"], tmp_path, env=env)
    assert out.code == 0 and out.stdout == "still answered\n"
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "OpenTelemetry export" in warnings[0], out.stderr
    assert "Traceback" not in out.stderr and "Transient error" not in out.stderr


def test_missing_sdk_is_one_warning(tmp_path: Path, sim_thread: Simulator) -> None:
    shadow = tmp_path / "shadow" / "opentelemetry"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('opentelemetry is not installed')\n")
    echo_roster(tmp_path, sim_thread)
    env = cli_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    env["PYTHONPATH"] = f"{tmp_path / 'shadow'}:{env['PYTHONPATH']}"
    # A process of its own: the import shadowing needs a fresh interpreter.
    out = run_process(["no sdk here"], tmp_path, env=env)
    assert out.code == 0 and out.stdout == "no sdk here\n"
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "tanglebrain[otel]" in warnings[0], out.stderr
