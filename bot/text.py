"""Making foreign text (reasons, container logs, provider errors) safe to post in Slack."""

from __future__ import annotations

import re

# After escaping, a plain user mention is let through again: it pings one person, as the
# author meant. Channel-wide mentions (<!channel>, <!here>) and links stay inert.
_USER_MENTION = re.compile(r"&lt;@([UW][A-Z0-9_]{1,20})&gt;")
SLACK_USER = re.compile(r"[UW][A-Z0-9_]{1,20}")


def escape(text: str) -> str:
    """Escape mrkdwn control characters, keeping only plain user mentions live."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _USER_MENTION.sub(r"<@\1>", escaped)


def mention(user: str) -> str:
    """Format a user id for Slack; CLI actors are shown as they are."""
    return f"<@{user}>" if SLACK_USER.fullmatch(user) else user
