"""Where a running rollback is reported: a Protocol, and a guard that never raises."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

import structlog

from bot.models import Rollback
from bot.verification import CheckResult

log = structlog.get_logger(__name__)


class Reporter(Protocol):
    """Where the engine reports a running rollback (a Slack thread, a terminal)."""

    async def progress(self, rollback: Rollback, text: str) -> None:
        """Report one step."""
        ...

    async def verified(self, rollback: Rollback, results: list[CheckResult]) -> None:
        """Report the verification table."""
        ...

    async def finished(self, rollback: Rollback, summary: str) -> None:
        """Report the end, success or failure, with the text to post."""
        ...


class Guarded:
    """A Reporter whose failures are logged, never raised: Slack being down must not
    turn a rollback that worked into one that failed."""

    def __init__(self, inner: Reporter) -> None:
        self._inner = inner

    async def progress(self, rollback: Rollback, text: str) -> None:
        """Report one step, best effort."""
        await self._safely(self._inner.progress(rollback, text))

    async def verified(self, rollback: Rollback, results: list[CheckResult]) -> None:
        """Report the verification table, best effort."""
        await self._safely(self._inner.verified(rollback, results))

    async def finished(self, rollback: Rollback, summary: str) -> None:
        """Report the outcome, best effort."""
        await self._safely(self._inner.finished(rollback, summary))

    @staticmethod
    async def _safely(call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as exc:
            log.warning("report failed", error=type(exc).__name__, detail=str(exc)[:200])
