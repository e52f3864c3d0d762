"""OpenTelemetry export of a finished run (the optional extra ``tanglebrain[otel]``).

After a run, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``…_TRACES_ENDPOINT``) is set,
the run tree becomes spans following the OpenTelemetry GenAI semantic conventions and
goes out in one OTLP/HTTP export. Nothing here runs while the run is in flight: the
spans are built from the trace with the timestamps it recorded. Span shape::

    invoke_agent tanglebrain              (the run)
    ├── turn N                            (an orchestrator turn)
    │   ├── chat MODEL                    (the orchestrator's call; attempts are events)
    │   └── execute_tool delegate_many    (a tool call)
    │       └── subtask N                 (a sub-task)
    │           └── chat MODEL            (one per backend tried: failover)
    └── chat MODEL                        (other calls: review, digest)

The SDK is imported only when exporting (``importlib``: it is optional). Prompts and
answers are not exported; token counts, models, timings and errors are, with the key
values passed as ``secrets`` masked in every string attribute, event and status.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tanglebrain._version import __version__
from tanglebrain.redact import Redactor
from tanglebrain.trace import FAILED, Attempt, Call, Run, Subtask, Turn

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TIMEOUT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
DEFAULT_TIMEOUT_S = 5.0
# litellm provider prefixes -> gen_ai.provider.name well-known values.
PROVIDERS = {
    "azure": "azure.ai.openai", "azure_ai": "azure.ai.inference", "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini", "vertex_ai": "gcp.vertex_ai", "mistral": "mistral_ai",
    "watsonx": "ibm.watsonx.ai", "xai": "x_ai",
}  # fmt: skip


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def provider_and_model(litellm_model: str) -> tuple[str, str]:
    """(``gen_ai.provider.name``, ``gen_ai.request.model``) of a litellm model string."""
    if "/" not in litellm_model:
        return "_OTHER", litellm_model
    prefix, model = litellm_model.split("/", 1)
    return PROVIDERS.get(prefix, prefix), model


def _error_type(attempt: Attempt) -> str:
    """``error.type``: the HTTP status when there was one, else the error's kind."""
    if attempt.http_status:
        return str(attempt.http_status)
    kind = attempt.error_kind
    if kind is None and attempt.error and "timed out" in attempt.error:
        kind = "timeout"  # recorded before attempts carried their kind
    return kind if kind and kind != "other" else "_OTHER"


class _Builder:
    """Creates the spans of one run with a tracer, parents passed explicitly."""

    def __init__(self, tracer: Any, api: Any, mask: Redactor) -> None:
        self.tracer = tracer
        self.api = api  # the opentelemetry.trace module
        self.status = importlib.import_module("opentelemetry.trace.status")
        self.mask = mask

    def attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """``attrs`` without None values, key values masked in the strings."""
        return {
            k: self.mask(v) if isinstance(v, str) else v for k, v in attrs.items() if v is not None
        }

    def span(
        self, name: str, parent: Any, start: float, attrs: dict[str, Any], kind: str = "INTERNAL"
    ) -> Any:
        context = self.api.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(
            name, context=context, kind=getattr(self.api.SpanKind, kind),
            attributes=self.attrs(attrs), start_time=_ns(start),
        )  # fmt: skip

    def end(self, span: Any, end: float, error: str | None = None) -> None:
        if error is not None:
            span.set_status(self.status.Status(self.status.StatusCode.ERROR, self.mask(error)))
        span.end(end_time=_ns(end))

    def call(self, parent: Any, call: Call, fallback: float) -> None:
        provider, model = provider_and_model(call.model)
        prompt, completion = call.tokens
        last = call.attempts[-1] if call.attempts else None
        failed = not call.ok
        span = self.span(f"chat {model}", parent, call.started or fallback, {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
            "gen_ai.request.model": model, "gen_ai.usage.input_tokens": prompt,
            "gen_ai.usage.output_tokens": completion,
            "error.type": _error_type(last) if failed and last
            else ("_OTHER" if failed else None),
            "tanglebrain.backend": call.backend, "tanglebrain.role": call.role,
            "tanglebrain.attempts": len(call.attempts), "tanglebrain.retries": call.retries,
            "tanglebrain.cost_usd": call.cost_usd,
            "tanglebrain.bytes_in": sum(a.bytes_in for a in call.attempts),
            "tanglebrain.bytes_out": sum(a.bytes_out for a in call.attempts),
            "tanglebrain.usage.estimated": any(a.estimated for a in call.attempts) or None,
        }, kind="CLIENT")  # fmt: skip
        for n, a in enumerate(call.attempts, 1):
            attrs = {
                "tanglebrain.attempt": n,
                "tanglebrain.status": a.status,
                "tanglebrain.latency_ms": a.latency_ms,
                "http.response.status_code": a.http_status,
                "error.type": _error_type(a) if a.status == "error" else None,
                "tanglebrain.error": a.error,
                "tanglebrain.usage.estimated": a.estimated or None,
            }
            span.add_event("tanglebrain.attempt", self.attrs(attrs), timestamp=_ns(a.started))
        self.end(span, call.ended or fallback, last.error if failed and last else None)

    def subtask(self, parent: Any, sub: Subtask, fallback: float) -> float:
        start, end = sub.started or fallback, sub.ended or sub.started or fallback
        failed = sub.status in FAILED
        span = self.span(f"subtask {sub.index}", parent, start, {
            "tanglebrain.subtask.index": sub.index, "tanglebrain.subtask.task": sub.task,
            "tanglebrain.subtask.status": sub.status, "tanglebrain.backend": sub.backend,
            "tanglebrain.failed_over": sub.failed_over,
            "error.type": sub.status if failed else None,
        })  # fmt: skip
        for call in sub.calls:
            self.call(span, call, start)
        self.end(span, end, sub.error if failed else None)
        return end

    def turn(self, parent: Any, turn: Turn, fallback: float) -> float:
        start = turn.call.started or fallback
        after_call = turn.call.ended or start
        span = self.span(f"turn {turn.index}", parent, start, {
            "tanglebrain.turn.index": turn.index, "tanglebrain.backend": turn.call.backend,
        })  # fmt: skip
        self.call(span, turn.call, start)
        end = after_call
        for tc in turn.tool_calls:
            tool_start = min([after_call, *(s.started for s in tc.subtasks if s.started)])
            tool = self.span(f"execute_tool {tc.name}", span, tool_start, {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tc.name,
                "gen_ai.tool.call.id": tc.id, "gen_ai.tool.type": "function",
                "tanglebrain.subtasks": len(tc.subtasks),
                "error.type": "tool_error" if tc.error else None,
            })  # fmt: skip
            tool_end = tool_start
            for sub in tc.subtasks:
                tool_end = max(tool_end, self.subtask(tool, sub, tool_start))
            self.end(tool, tool_end, tc.error)
            end = max(end, tool_end)
        self.end(span, end)
        return end


def record_spans(run: Run, provider: Any, secrets: Iterable[str] = ()) -> None:
    """Create the spans of ``run`` on ``provider`` (an SDK ``TracerProvider``).

    Args:
        run: a finished (or interrupted) run.
        provider: where the spans go, e.g. one with a ``SimpleSpanProcessor`` around an
            ``InMemorySpanExporter`` in tests.
        secrets: key values to mask in every exported string.
    """
    api = importlib.import_module("opentelemetry.trace")
    b = _Builder(provider.get_tracer("tanglebrain", __version__), api, Redactor(secrets))
    end = run.ended or run.started
    f = run.figures()
    failed = run.status != "ok"
    root = b.span("invoke_agent tanglebrain", None, run.started, {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "tanglebrain",
        "tanglebrain.run.id": run.id, "tanglebrain.mode": run.mode,
        "tanglebrain.status": run.status, "tanglebrain.orchestrator": run.orchestrator,
        "tanglebrain.usage.input_tokens": f.prompt_tokens,
        "tanglebrain.usage.output_tokens": f.completion_tokens,
        "tanglebrain.cost_usd": f.cost_usd, "tanglebrain.subtasks": f.subtasks,
        "tanglebrain.orchestrator_context_tokens": f.orchestrator_context_tokens,
        "error.type": run.status if failed else None,
    })  # fmt: skip
    cursor = run.started
    for turn in run.turns:
        cursor = b.turn(root, turn, cursor)
    for call in run.extra_calls:
        b.call(root, call, cursor)
    b.end(root, max(end, cursor), run.error if failed else None)


@contextmanager
def _quiet_sdk() -> Iterator[None]:
    """Keep the SDK's own log lines (retries, failures) off the user's stderr."""
    logger = logging.getLogger("opentelemetry")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_run(run: Run, exporter: Any, resource: Any = None, secrets: Iterable[str] = ()) -> bool:
    """Build the spans of ``run`` and hand them to ``exporter`` in one ``export`` call.

    Args:
        run: a finished (or interrupted) run.
        exporter: an SDK span exporter.
        resource: the SDK ``Resource`` of the spans, when given.
        secrets: key values to mask in every exported string.

    Returns:
        Whether the exporter reported success.
    """
    sdk = importlib.import_module("opentelemetry.sdk.trace")
    export = importlib.import_module("opentelemetry.sdk.trace.export")
    memory = importlib.import_module("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    collected = memory.InMemorySpanExporter()
    provider = sdk.TracerProvider(**({"resource": resource} if resource is not None else {}))
    provider.add_span_processor(export.SimpleSpanProcessor(collected))
    record_spans(run, provider, secrets)
    provider.shutdown()
    with _quiet_sdk():
        result = exporter.export(collected.get_finished_spans())
        exporter.shutdown()
    return bool(result == export.SpanExportResult.SUCCESS)


def export_if_configured(
    run: Run, env: Mapping[str, str], secrets: Iterable[str] = ()
) -> str | None:
    """Export ``run`` over OTLP/HTTP when an endpoint is configured in ``env``.

    Args:
        run: a finished (or interrupted) run.
        env: where the ``OTEL_EXPORTER_OTLP_*`` settings are read.
        secrets: key values to mask in every exported string.

    Returns:
        None when nothing was configured or the export worked, else one warning line.
    """
    endpoint = next((env[v] for v in ENDPOINT_VARS if env.get(v)), None)
    if endpoint is None:
        return None
    try:
        otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        resources = importlib.import_module("opentelemetry.sdk.resources")
    except ImportError:
        return (
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed; "
            "install tanglebrain[otel] (the run is not exported)"
        )
    if not env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    timeout = None if any(env.get(v) for v in TIMEOUT_VARS) else DEFAULT_TIMEOUT_S
    try:
        with _quiet_sdk():
            exporter = otlp.OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
            attrs = {"service.version": __version__}
            if not env.get("OTEL_SERVICE_NAME"):
                attrs["service.name"] = "tanglebrain"
            resource = resources.Resource.create(attrs)
        ok = export_run(run, exporter, resource, secrets)
    except Exception as exc:  # an exporter bug must not cost the user an answer
        return f"OpenTelemetry export to {endpoint} failed: {type(exc).__name__}: {exc}"
    return None if ok else f"OpenTelemetry export to {endpoint} failed (run {run.id})"
