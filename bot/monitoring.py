"""Post-rollback monitoring: a window of rounds of health checks, reported only on change."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from bot.config import MonitoringConfig
from bot.verification import Check, CheckResult, run_checks


class Window(BaseModel):
    """A monitoring window as its job keeps it between rounds (the job's payload)."""

    service: str
    environment: str
    started_at: datetime
    until: datetime
    interval_seconds: float
    rounds: int = 0
    changes: int = 0
    ok: dict[str, bool] = Field(
        default_factory=dict, description="Last outcome of each check, by name."
    )

    @classmethod
    def open(
        cls,
        service: str,
        environment: str,
        started_at: datetime,
        settings: MonitoringConfig,
        checks: Sequence[Check],
    ) -> Window:
        """Start a window: every check passed the verification that ended the rollback."""
        return cls(
            service=service,
            environment=environment,
            started_at=started_at,
            until=started_at + timedelta(minutes=settings.window_minutes),
            interval_seconds=settings.interval_minutes * 60,
            ok={check.name: True for check in checks},
        )

    @property
    def first_due(self) -> datetime:
        """Return when the first round is due."""
        return min(self.started_at + timedelta(seconds=self.interval_seconds), self.until)

    @property
    def minutes(self) -> float:
        """Return the length of the window in minutes."""
        return (self.until - self.started_at).total_seconds() / 60

    def next_due(self, due_at: datetime, now: datetime) -> datetime | None:
        """Return when the round after the one due at `due_at` is due, or None at the end.

        Rounds keep their cadence; those missed while the bot was down are skipped, and
        the last round runs when the window ends.
        """
        if due_at >= self.until:
            return None
        step = timedelta(seconds=self.interval_seconds)
        missed = max(0, math.floor((now - due_at) / step))
        return min(due_at + step * (missed + 1), self.until)

    def failing(self) -> list[str]:
        """Return the checks that failed in the last round."""
        return [name for name, ok in self.ok.items() if not ok]


@dataclass(frozen=True)
class Change:
    """A check whose outcome differs from the round before."""

    result: CheckResult

    @property
    def went_bad(self) -> bool:
        """Return True when the check started failing (False: it recovered)."""
        return not self.result.ok


def changes(previous: Mapping[str, bool], results: Sequence[CheckResult]) -> list[Change]:
    """Return the checks whose outcome differs from `previous` (a new check counts as ok)."""
    return [Change(r) for r in results if r.ok != previous.get(r.name, True)]


async def run_round(
    checks: Sequence[Check], previous: Mapping[str, bool], confirm_after_seconds: float
) -> tuple[list[CheckResult], list[Change]]:
    """Run each check once; re-run the ones that changed to confirm it before reporting.

    One attempt per check (bounded by its own timeout) keeps a round short; a change is
    reported only when a second attempt `confirm_after_seconds` later agrees, so one
    dropped request does not post an alert and a recovery right after it.
    """
    results = await run_checks(checks, deadline_seconds=0)
    first = changes(previous, results)
    if not first:
        return results, []
    await asyncio.sleep(confirm_after_seconds)
    names = {change.result.name for change in first}
    again = await run_checks([c for c in checks if c.name in names], deadline_seconds=0)
    second = {r.name: r for r in again}
    results = [second.get(r.name, r) for r in results]
    return results, changes(previous, results)
