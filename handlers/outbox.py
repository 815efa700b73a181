"""Slack updates sent beside the work, never in front of it: ordered per rollback, coalesced.

A running rollback reports each step; Slack may answer any call with 429 and Retry-After.
Awaiting each post before the next step made a 0.2 s container swap take seconds. Here a
report is queued and returns at once; one sender per rollback posts the thread replies in
order and redraws the card from the store's latest state only when nothing else is
queued, so a burst of steps costs one card update (latest state wins).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

Send = Callable[[], Awaitable[None]]


class Outbox:
    """Per-rollback ordered sending, with one coalesced card redraw."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Send]] = {}
        self._redraws: dict[str, Send] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}

    def send(self, key: str, call: Send, *, redraws: bool = False) -> None:
        """Queue a call (a thread reply, the outcome); calls of one key run in order.

        `redraws`: the call redraws the card itself, so a redraw asked for before is dropped.
        """
        self._queues.setdefault(key, deque()).append(call)
        if redraws:
            self._redraws.pop(key, None)
        self._wake(key)

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
        if key not in self._senders or self._senders[key].done():
            self._senders[key] = asyncio.create_task(self._drain(key))

    async def _drain(self, key: str) -> None:
        while True:
            queue = self._queues.get(key)
            if queue:
                call = queue.popleft()
            elif key in self._redraws:
                call = self._redraws.pop(key)
            else:
                self._queues.pop(key, None)
                self._senders.pop(key, None)
                return
            try:
                await call()
            except Exception as exc:
                # Slack being down must not stop the rest of what the thread should show.
                log.warning("slack update failed", key=key, error=type(exc).__name__)
