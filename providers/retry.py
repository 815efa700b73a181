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
