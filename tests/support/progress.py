"""A progress callback that keeps what a provider reported."""

from __future__ import annotations


class Recorder:
    """Collects progress messages the way the thread would show them."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, text: str) -> None:
        self.messages.append(text)

    @property
    def text(self) -> str:
        """Return all messages, one per line."""
        return "\n".join(self.messages)
