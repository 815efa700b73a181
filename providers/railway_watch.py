"""Following the deployment a Railway rollback created, at a pace Slack and Railway accept.

Railway's public API allows a limited number of requests (``X-RateLimit-*`` headers, 429
with Retry-After when exceeded), so a 429 while watching only slows the watch down. A
thread that gets one message per poll is unreadable, so a status is reported when it
changes, at most one line every `every` seconds; the final status is never held back.
"""

from __future__ import annotations

import time

from providers.base import Progress, say


class Pacer:
    """Pass progress lines on when they say something new, no more often than `every` s."""

    def __init__(self, progress: Progress, every: float) -> None:
        self._progress = progress
        self._every = every
        self._said: str | None = None
        self._held: str | None = None
        self._last_at = float("-inf")

    async def report(self, line: str, *, final: bool = False) -> None:
        """Say `line` now if it is new and its time has come (or it is final), else hold it."""
        if line == self._said:
            return
        if final or time.monotonic() - self._last_at >= self._every:
            await self._say(line)
        else:
            self._held = line

    async def tick(self) -> None:
        """Say the line held back, once the pause since the last one is long enough."""
        if self._held is not None and time.monotonic() - self._last_at >= self._every:
            await self._say(self._held)

    async def _say(self, line: str) -> None:
        self._said, self._held, self._last_at = line, None, time.monotonic()
        await say(self._progress, line)
