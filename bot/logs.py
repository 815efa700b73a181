"""structlog setup: JSON lines when not a TTY, console otherwise; secrets redacted.

Every string of every event, nested ones and formatted tracebacks included, goes
through `bot.redact`, for rollbot's own logs and for libraries' stdlib logs alike.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from bot.redact import redact


def _scrubbed(value: Any) -> Any:
    """Return a value with every string in it redacted, however deeply nested."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    if isinstance(value, BaseException):
        # The renderers show an exception given as a value by its repr, message and all.
        text = repr(value)
        cleaned = redact(text)
        return cleaned if cleaned != text else value
    return value


def _redact_event(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event.items():
        event[key] = _scrubbed(value)
    return event


def configure(fmt: str | None = None, level: int = logging.INFO) -> None:
    """Configure structlog and the stdlib root logger once for the process."""
    json_lines = (fmt or ("console" if sys.stderr.isatty() else "json")) == "json"
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_event,
    ]
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Library logs (bolt, aiohttp, a provider's SDK) go through the same redaction and
    # format, with the same context: the request's trace id, the rollback a call is for.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=renderer, foreign_pre_chain=processors)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
