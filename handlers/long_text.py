"""Long text split into parts Slack shows whole, cut at line ends where it can be."""

from __future__ import annotations

# Slack cuts a message's text after 40,000 characters and recommends staying under 4,000.
MESSAGE_TEXT_MAX = 3_900


def split_text(text: str, limit: int = MESSAGE_TEXT_MAX) -> list[str]:
    """Split `text` into parts of at most `limit` characters, at newlines when possible."""
    parts: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > limit:  # a single line longer than a part: cut it
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) > limit:
            parts.append(current)
            current = ""
        current += line
    if current or not parts:
        parts.append(current)
    return [p.rstrip("\n") for p in parts]
