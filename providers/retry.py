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

from providers.base import RateLimited, Transient

T = TypeVar("T")


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 4,
    base_delay: float = 0.5,
    max_delay: float = 10.0,
    deadline_seconds: float = 30.0,
) -> T:
    """Run `call`, retrying Transient errors with exponential backoff until the deadline."""
    give_up_at = time.monotonic() + deadline_seconds
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Transient as exc:
            wait = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
            if isinstance(exc, RateLimited) and exc.retry_after is not None:
                wait = max(wait, exc.retry_after)
            if attempt == attempts or time.monotonic() + wait > give_up_at:
                raise
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
