"""Listeners that react when a rollback moves, so features stay out of each other's code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from bot.models import Rollback

log = structlog.get_logger(__name__)

Listener = Callable[[Rollback], Awaitable[None]]


class Hooks:
    """Calls every listener after a transition; one failing never stops the others."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def add(self, listener: Listener) -> Listener:
        """Register a listener (usable as a decorator)."""
        self._listeners.append(listener)
        return listener

    async def moved(self, rollback: Rollback) -> None:
        """Tell every listener that a rollback reached its current state."""
        for listener in self._listeners:
            try:
                await listener(rollback)
            except Exception:
                # A report or a notification that fails must not undo what happened.
                log.exception("hook failed", rollback_id=rollback.id, hook=listener.__name__)
