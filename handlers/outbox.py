"""Slack updates sent beside the work, never in front of it: ordered per rollback, coalesced.

A running rollback reports each step; Slack may answer any call with 429 and Retry-After.
Awaiting each post before the next step made a 0.2 s container swap take seconds. Here a
report is queued and returns at once; one sender per rollback posts the thread replies in
order and redraws the card from the store's latest state only when nothing else is
queued, so a burst of steps costs one card update (latest state wins).

Progress is a `latest` call: it keeps the place in the queue where it was first asked
for, later asks only replace it, and it runs at most once every `every` seconds, unless
something queued behind it is waiting (the outcome must not wait, and must not overtake
the last progress either).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog

log = structlog.get_logger(__name__)

Send = Callable[[], Awaitable[None]]
_LATEST = object()  # the place of a `latest` call in a queue


class Outbox:
    """Per-rollback ordered sending, with one coalesced card redraw."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Send | object]] = {}
        self._redraws: dict[str, Send] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._latest: dict[str, tuple[Send, float]] = {}
        self._last_run: dict[str, float] = {}
        self._kicks: dict[str, asyncio.Event] = {}

    def send(self, key: str, call: Send, *, redraws: bool = False) -> None:
        """Queue a call (a thread reply, the outcome); calls of one key run in order.

        `redraws`: the call redraws the card itself, so a redraw asked for before is dropped.
        """
        self._queues.setdefault(key, deque()).append(call)
        if redraws:
            self._redraws.pop(key, None)
        self._wake(key)

    def latest(self, key: str, call: Send, *, every: float) -> None:
        """Queue a call that a later one replaces until it runs, at most once every `every` s."""
        if key not in self._latest:
            self._queues.setdefault(key, deque()).append(_LATEST)
        self._latest[key] = (call, every)
        self._wake(key)

    def forget(self, key: str) -> None:
        """Drop the pacing of a key's `latest` calls (its rollback has ended)."""
        self._last_run.pop(key, None)

    def redraw(self, key: str, call: Send) -> None:
        """Ask for a card redraw; only the latest asked for runs, after the queued calls."""
        self._redraws[key] = call
        self._wake(key)

    async def flush(self, key: str | None = None, within: float | None = None) -> None:
        """Wait until what was queued (for one key, or all) is sent, or `within` s pass."""
        tasks = [self._senders[key]] if key in self._senders else []
        if key is None:
            tasks = list(self._senders.values())
        if tasks:
            await asyncio.wait(tasks, timeout=within)

    def _wake(self, key: str) -> None:
        if key in self._kicks:
            self._kicks[key].set()
        if key not in self._senders or self._senders[key].done():
            self._senders[key] = asyncio.create_task(self._drain(key))

    async def _drain(self, key: str) -> None:
        while True:
            queue = self._queues.get(key)
            if queue and queue[0] is _LATEST:
                latest, every = self._latest[key]
                wait = self._last_run.get(key, -every) + every - time.monotonic()
                if wait > 0 and len(queue) == 1:
                    await self._pause(key, wait)
                    continue
                queue.popleft()
                del self._latest[key]
                self._last_run[key] = time.monotonic()
                call = latest
            elif queue:
                call = cast(Send, queue.popleft())
            elif key in self._redraws:
                call = self._redraws.pop(key)
            else:
                self._queues.pop(key, None)
                self._senders.pop(key, None)
                return
            try:
                await call()
            except Exception as exc:
                # Slack being down must not stop the rest of what the thread should show;
                # the log says what was not shown (the audit log keeps it all).
                log.warning(
                    "slack update failed",
                    key=key,
                    unsent=getattr(call, "__qualname__", type(call).__name__),
                    error=slack_error(exc),
                )

    async def _pause(self, key: str, seconds: float) -> None:
        """Wait before a paced call, cut short when something is queued behind it."""
        kick = self._kicks.setdefault(key, asyncio.Event())
        kick.clear()
        try:
            await asyncio.wait_for(kick.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            self._kicks.pop(key, None)


def slack_error(exc: Exception) -> str:
    """Name a failed call's cause: Slack's error code, or the exception's type."""
    response: Any = getattr(exc, "response", None)
    code = response.get("error") if hasattr(response, "get") else None
    return f"{type(exc).__name__}: {code}" if code else type(exc).__name__
