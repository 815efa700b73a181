"""User-facing text rendered from the Jinja2 templates in `templates/`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bot.text import escape

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@cache
def environment(*, slack: bool = True) -> Environment:
    """Return the Jinja2 environment: for Slack every value is escaped for mrkdwn.

    Documents (the incident report, a Markdown file) are not Slack text: their values
    go in as they are, so a reason with `&` or `<` reads the same in the file.
    """
    return Environment(  # noqa: S701 - output is Slack mrkdwn or Markdown, never HTML
        loader=FileSystemLoader(TEMPLATES),
        finalize=(lambda value: escape(value) if isinstance(value, str) else value)
        if slack
        else None,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def render(name: str, **context: Any) -> str:
    """Render one template with the given context."""
    return environment().get_template(name).render(**context).strip()


def render_document(name: str, **context: Any) -> str:
    """Render a document template (Markdown for a file, not Slack text), ending in a newline."""
    return environment(slack=False).get_template(name).render(**context).strip() + "\n"
