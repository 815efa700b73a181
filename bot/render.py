"""User-facing text rendered from the Jinja2 templates in `templates/`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bot.text import escape

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@cache
def environment() -> Environment:
    """Return the one Jinja2 environment; every value is escaped for Slack mrkdwn."""
    return Environment(  # noqa: S701 - output is Slack mrkdwn, escaped by finalize, not HTML
        loader=FileSystemLoader(TEMPLATES),
        finalize=lambda value: escape(value) if isinstance(value, str) else value,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def render(name: str, **context: Any) -> str:
    """Render one template with the given context."""
    return environment().get_template(name).render(**context).strip()
