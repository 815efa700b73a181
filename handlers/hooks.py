"""Listeners that react when a rollback moves, so features stay out of each other's code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.events import Subscribers
from bot.models import Rollback

Listener = Callable[[Rollback], Awaitable[None]]


class Hooks(Subscribers[Rollback]):
    """Calls every listener after a transition; one failing never stops the others."""

    def __init__(self) -> None:
        super().__init__("hook")

    async def moved(self, rollback: Rollback) -> None:
        """Tell every listener that a rollback reached its current state."""
        await self.tell(rollback, rollback.id)
