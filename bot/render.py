"""User-facing text rendered from the Jinja2 templates in `bot/templates/` (package data)."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from bot.redact import redact
from bot.text import one_line, quote_user_text, safe


def _document_text(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def _slack_text(value: Any) -> Any:
    return safe(value) if isinstance(value, str) else value


def _typed_line(value: str) -> str:
    return one_line(redact(value))


@cache
def environment(*, slack: bool = True) -> Environment:
    """Return the Jinja2 environment: for Slack every value is escaped for mrkdwn.

    Documents (the incident report, a Markdown file) are not Slack text: their values
    go in as they are, so a reason with `&` or `<` reads the same in the file. Both
    redact secrets; the `user_text` filter shows what a person typed on one line,
    and inert in Slack.
    """
    env = Environment(  # noqa: S701 - output is Slack mrkdwn or Markdown, never HTML
        loader=PackageLoader("bot", "templates"),
        finalize=_slack_text if slack else _document_text,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        # Package data does not change while running: no file check on every render.
        auto_reload=False,
    )
    env.filters["user_text"] = quote_user_text if slack else _typed_line
    return env


def render(name: str, **context: Any) -> str:
    """Render one template with the given context."""
    return environment().get_template(name).render(**context).strip()


def render_document(name: str, **context: Any) -> str:
    """Render a document template (Markdown for a file, not Slack text), ending in a newline."""
    return environment(slack=False).get_template(name).render(**context).strip() + "\n"
