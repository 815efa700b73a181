"""What the engine publishes: one typed event per transition it applies, to subscribers.

The engine never calls features by name: metrics, the Slack thread's hooks (timeline,
checklist, monitoring, escalation, notifications, status page, incident report, incident
channel) subscribe. A subscriber must not sit in front of the work: it records a number,
or queues its Slack calls (see handlers/outbox.py) and returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

import structlog

from bot.models import FINAL_STATES, Rollback, State
from bot.states import Trigger

log = structlog.get_logger(__name__)


class EventKind(StrEnum):
    """What happened to a rollback, in the words a subscriber filters on."""

    REQUESTED = "requested"
    SEVERITY_CONFIRMED = "severity_confirmed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    STARTED = "started"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    INTERRUPTED = "interrupted"


# A state reached names the event, but for the two whose name says more than the state.
_BY_TRIGGER = {Trigger.START: EventKind.STARTED, Trigger.ROLL_FORWARD: EventKind.STARTED}


@dataclass(frozen=True)
class Moved:
    """A rollback moved: the transition applied, who caused it, and the rollback after it."""

    rollback: Rollback
    previous: State | None  # None: the rollback was just requested
    trigger: Trigger
    actor: str

    @property
    def kind(self) -> EventKind:
        """Name what happened."""
        return _BY_TRIGGER.get(self.trigger) or EventKind(self.rollback.state.value)

    @property
    def ended(self) -> bool:
        """Return True when the rollback reached a final state."""
        return self.rollback.state in FINAL_STATES


T = TypeVar("T")


class Subscribers(Generic[T]):
    """Callables told of each item in order; one failing is logged and stops no other."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._subscribers: list[Callable[[T], Awaitable[None]]] = []

    def add(self, subscriber: Callable[[T], Awaitable[None]]) -> Callable[[T], Awaitable[None]]:
        """Add a subscriber (usable as a decorator)."""
        self._subscribers.append(subscriber)
        return subscriber

    async def tell(self, item: T, rollback_id: str) -> None:
        """Hand an item to every subscriber."""
        for subscriber in self._subscribers:
            try:
                await subscriber(item)
            except Exception:
                # What happened happened: a subscriber's failure must not undo or stop it.
                log.exception(
                    f"{self._what} failed",
                    rollback_id=rollback_id,
                    subscriber=getattr(subscriber, "__qualname__", repr(subscriber)),
                )


class Events(Subscribers[Moved]):
    """The engine's subscribers."""

    def __init__(self) -> None:
        super().__init__("event subscriber")

    def subscribe(self, subscriber: Callable[[Moved], Awaitable[None]]) -> None:
        """Add a subscriber of every transition."""
        self.add(subscriber)

    async def publish(self, event: Moved) -> None:
        """Hand an event to every subscriber."""
        await self.tell(event, event.rollback.id)
