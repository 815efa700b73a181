"""Making text safe to post in Slack: secrets redacted, nothing pings, nothing forges.

Machine text (provider output, container logs, errors) goes through `escape`. What a
person typed (reasons, drafts, command words) goes through `quote_user_text`, or
`inert` where its lines and formatting are the point.
"""

from __future__ import annotations

import re

from bot.redact import redact

# After escaping machine text, a plain user mention is let through again: rollbot's own
# texts name people that way ("Cancelled by <@U…>"). Channel-wide mentions and links stay
# inert.
_USER_MENTION = re.compile(r"&lt;@([UW][A-Z0-9_]{1,20})&gt;")
SLACK_USER = re.compile(r"[UW][A-Z0-9_]{1,20}")
# Some clients turn these bare words into channel-wide mentions; a zero-width joiner
# after the '@' keeps the word readable and dead.
_BROADCAST = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
# mrkdwn formats only between markers at a word's edge; there they become look-alikes,
# so typed text cannot bold, strike or code anything. snake_case and :emoji_codes: stay.
_LOOKALIKES = {"*": "∗", "_": "ˍ", "~": "∼", "`": "ˋ"}
_MARKER = re.compile(r"(?<![^\W_])[*_~`]|[*_~`](?![^\W_])")
USER_TEXT_LIMIT = 500


class Mrkdwn(str):
    """Text already made safe for Slack mrkdwn; templates insert it as it is."""


def _entities(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape(text: str) -> Mrkdwn:
    """Redact machine text and escape mrkdwn control characters, keeping user mentions live."""
    return Mrkdwn(_USER_MENTION.sub(r"<@\1>", _entities(redact(text))))


def one_line(text: str, limit: int = USER_TEXT_LIMIT) -> str:
    """Put text on one line and cut it to `limit` characters, marking a cut with `…`."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def inert(text: str) -> Mrkdwn:
    """Escape what a person wrote, keeping its lines and formatting but no mention or link."""
    return Mrkdwn(_BROADCAST.sub("@\u200d", _entities(redact(text))))


def quote_user_text(text: str, limit: int = USER_TEXT_LIMIT) -> Mrkdwn:
    """Show what a person typed as one inert line: no mention, link, formatting or secret."""
    flat = inert(one_line(redact(text), limit))
    return Mrkdwn(_MARKER.sub(lambda marker: _LOOKALIKES[marker[0]], flat))


def safe(text: str) -> Mrkdwn:
    """Return text that is already safe as it is, and escape anything else."""
    return text if isinstance(text, Mrkdwn) else escape(text)


def mention(user: str) -> str:
    """Format a user id for Slack; CLI actors are shown as they are."""
    return f"<@{user}>" if SLACK_USER.fullmatch(user) else user
