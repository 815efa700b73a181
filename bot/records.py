"""Records of checklist ticks and of things posted or sent once per rollback."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from bot.models import utcnow


class ChecklistMark(BaseModel):
    """One tick or untick of a checklist item by a person (the history is append-only)."""

    rollback_id: str
    item: str
    done: bool
    actor: str
    at: datetime = Field(default_factory=utcnow)


class Delivery(BaseModel):
    """Something rollbot posts or sends at most once per rollback, e.g. the checklist message.

    The row is claimed before the work is done, so two processes or two hook calls never
    both do it; `channel`/`ts` say where the message is, `body` holds a draft's text.
    """

    rollback_id: str
    key: str
    actor: str
    at: datetime = Field(default_factory=utcnow)
    channel: str | None = None
    ts: str | None = None
    body: str | None = None
