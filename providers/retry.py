"""Retrying reads: backoff with jitter that honours Retry-After, under a deadline.

Only reads go through here. A rollback mutation is never retried blindly: a request
that timed out may still have been applied, and a second one could roll back twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from providers.base import ProviderError, RateLimited, TimedOut, Transient

T = TypeVar("T")


def backoff(
    attempt: int, error: ProviderError, *, base_delay: float = 0.5, max_delay: float = 10.0
) -> float:
    """Seconds to wait after failed attempt `attempt`: jittered, never below Retry-After."""
    wait = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
    if isinstance(error, RateLimited) and error.retry_after is not None:
        wait = max(wait, error.retry_after)
    return wait


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 4,
    base_delay: float = 0.5,
    max_delay: float = 10.0,
    deadline_seconds: float = 30.0,
    timeouts: bool = False,
) -> T:
    """Run `call`, retrying Transient errors with exponential backoff until the deadline.

    With `timeouts`, an unanswered request (TimedOut) is retried too: right for a read,
    never for a write, whose request may have landed.
    """
    retried: tuple[type[ProviderError], ...] = (Transient, TimedOut) if timeouts else (Transient,)
    give_up_at = time.monotonic() + deadline_seconds
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except retried as exc:
            wait = backoff(attempt, exc, base_delay=base_delay, max_delay=max_delay)
            if attempt == attempts or time.monotonic() + wait > give_up_at:
                raise
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def watching(
    check: Callable[[], Awaitable[T | None]],
    *,
    deadline_seconds: float,
    interval: float,
    trouble: Callable[[ProviderError], Awaitable[None]],
    late: Callable[[], Awaitable[ProviderError]],
) -> T:
    """Poll `check` until it returns a value, under a deadline; then raise what `late` makes.

    A read that fails (Transient, TimedOut, RateLimited) only slows the watch down: the
    next poll waits with backoff and at least as long as Retry-After asks. `trouble` hears
    the first failure of each bad spell, so a long outage is one line, not one per poll.
    """
    give_up_at = time.monotonic() + deadline_seconds
    failures = 0
    while True:
        try:
            done = await check()
        except (Transient, TimedOut) as exc:
            failures += 1
            wait = backoff(failures, exc, base_delay=interval, max_delay=max(interval, 30.0))
            if failures == 1:
                await trouble(exc)
        else:
            if done is not None:
                return done
            failures, wait = 0, interval
        left = give_up_at - time.monotonic()
        # Never poll again sooner than a rate limit allows, even to meet the deadline.
        if left <= 0 or (failures and wait > left):
            raise await late()
        await asyncio.sleep(min(wait, left))
