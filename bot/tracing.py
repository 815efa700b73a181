"""Trace ids in the logs, and OpenTelemetry spans when an OTLP endpoint is configured.

A trace starts with each Slack request (handlers/tracing.py) or, when none is under way,
with a rollback run (the sweeper resuming one, the CLI). Its id is bound into structlog's
context variables, which asyncio tasks copy when they are created: the run an approval
starts, and every provider call in it, log the same `trace_id` and `rollback_id`.

With `OTEL_EXPORTER_OTLP_ENDPOINT` set and the `[otel]` extra installed, each trace is an
OpenTelemetry trace too (its id is the logs' `trace_id`), exported over OTLP/HTTP; the
exporter reads the standard `OTEL_*` variables itself (headers, sampler, service name).
Without the extra, one warning says so and rollbot runs untraced: a missing tracing
library must not keep a rollback bot down during an incident.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import structlog

from bot.models import PlanStep, Rollback

log = structlog.get_logger(__name__)

# Values OTel span attributes accept; anything else is left out of the span.
AttributeValue = str | bool | int | float

# The tracer and the means to end it, while OpenTelemetry is on in this process.
_otel: _Otel | None = None


class _Otel:
    """The OpenTelemetry SDK's parts rollbot uses, imported only when tracing is on."""

    def __init__(self) -> None:
        from opentelemetry import context, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over the default.
        resource = Resource.create({"service.name": "rollbot"}).merge(
            OTELResourceDetector().detect()
        )
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.provider.get_tracer("rollbot")
        self.trace = trace
        self.empty_context = context.Context

    @contextmanager
    def span(
        self, name: str, *, root: bool, attributes: dict[str, AttributeValue]
    ) -> Iterator[str]:
        """Run a block in a span (a new trace when `root`); yield its trace id in hex."""
        parent = self.empty_context() if root else None
        with self.tracer.start_as_current_span(name, context=parent, attributes=attributes) as s:
            yield self.trace.format_trace_id(s.get_span_context().trace_id)


def configure(endpoint: str | None) -> bool:
    """Turn OpenTelemetry tracing on when an endpoint is set; True when it is on."""
    global _otel
    if not endpoint or _otel is not None:
        return _otel is not None
    try:
        _otel = _Otel()
    except ImportError as exc:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
            "(pip install 'rollbot[otel]'); running without tracing",
            missing=exc.name,
        )
        return False
    # Without any user:password a URL may carry: the log shows where spans go, no more.
    where = urlsplit(endpoint)
    port = f":{where.port}" if where.port else ""
    log.info("opentelemetry tracing on", endpoint=f"{where.scheme}://{where.hostname}{port}")
    return True


def shutdown() -> None:
    """Send the spans not yet exported and stop tracing (at exit)."""
    global _otel
    if _otel is not None:
        _otel.provider.shutdown()
        _otel = None


def new_trace_id() -> str:
    """Return a random trace id: 16 bytes in hex, the shape of an OpenTelemetry one."""
    return secrets.token_hex(16)


def current_trace_id() -> str | None:
    """Return the trace id the current request or run logs with, if any."""
    value = structlog.contextvars.get_contextvars().get("trace_id")
    return value if isinstance(value, str) else None


@contextmanager
def traced(
    name: str,
    *,
    root: bool = False,
    log_fields: dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
) -> Iterator[str]:
    """Run a block in a span and bind its trace id and `log_fields` into the logs' context.

    `root` starts a new trace; without it the block joins the trace under way, or starts
    one when there is none. `attributes` go on the span (None ones are left out). Yields
    the trace id.
    """
    fields = log_fields or {}
    kept = {k: v for k, v in (attributes or {}).items() if isinstance(v, AttributeValue)}
    under_way = current_trace_id()
    if _otel is not None:
        with _otel.span(name, root=root or under_way is None, attributes=kept) as trace_id:
            with structlog.contextvars.bound_contextvars(trace_id=trace_id, **fields):
                yield trace_id
        return
    trace_id = new_trace_id() if root or under_way is None else under_way
    with structlog.contextvars.bound_contextvars(trace_id=trace_id, **fields):
        yield trace_id


@contextmanager
def rollback_run(rollback: Rollback, *, resumed: bool = False) -> Iterator[str]:
    """Run a rollback in a span, its id and target in every log line; yield the trace id.

    A run goes on in the trace of the request that started it; a run resumed after a
    takeover starts a trace of its own, which names the one the rollback was requested in.
    """
    fields: dict[str, Any] = {
        "rollback_id": rollback.id,
        "service": rollback.service,
        "environment": rollback.environment,
    }
    with traced(
        "rollback run",
        root=resumed,
        log_fields=fields,
        attributes={
            "rollback.id": rollback.id,
            "rollback.service": rollback.service,
            "rollback.environment": rollback.environment,
            "rollback.resumed": resumed,
            "rollback.requested_trace_id": rollback.trace_id,
        },
    ) as trace_id:
        if rollback.trace_id and rollback.trace_id != trace_id:
            with structlog.contextvars.bound_contextvars(requested_trace_id=rollback.trace_id):
                yield trace_id
        else:
            yield trace_id


@contextmanager
def provider_call(rollback: Rollback, index: int, step: PlanStep) -> Iterator[None]:
    """Run one step's provider call in a span; log its outcome with its duration."""
    started = time.perf_counter()
    with traced(
        f"rollback step {step.kind}",
        log_fields={"step": index + 1, "provider": step.kind},
        attributes={
            "rollback.id": rollback.id,
            "rollback.service": rollback.service,
            "rollback.step": index + 1,
            "rollback.step_name": step.name,
            "rollback.provider": step.kind,
        },
    ):
        try:
            yield
        except BaseException as exc:
            log.warning(
                "provider call failed",
                error=getattr(exc, "message", None) or type(exc).__name__,
                duration_s=round(time.perf_counter() - started, 2),
            )
            raise
        log.info("provider call finished", duration_s=round(time.perf_counter() - started, 2))
