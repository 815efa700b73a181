"""The guide's user notification, and the status-page webhook told once per status.

A status page that fails is reported, never raised: it must not fail a rollback that
worked. The secret header's value is read from its variable when sending and goes
nowhere else: not into errors, logs or messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog

from bot.config import StatusPageConfig
from bot.engine import Engine
from bot.models import Rollback, utcnow
from bot.records import Delivery
from bot.render import render
from bot.time_words import time_range
from providers.base import ProviderError, Refused
from providers.http import error_for, new_client, send, token_from
from providers.retry import retrying

log = structlog.get_logger(__name__)

BOT = "rollbot"
STATUS_EVENT = "status_page"
STATUS_FAILED_EVENT = "status_page_failed"
USER_NOTIFICATION_EVENT = "user_notification"


class PageStatus(StrEnum):
    """What the status page is told about a rollback's incident."""

    INVESTIGATING = "investigating"
    RESOLVED = "resolved"


def status_event_text(status: PageStatus) -> str:
    """Return the timeline line recorded when the status page took a status."""
    return f"Status page: {status.value}"


RESOLVED_EVENT_TEXT = status_event_text(PageStatus.RESOLVED)


def user_notification(rb: Rollback, tz: str | None = None) -> str:
    """Render the guide's user notification, its times in `tz` (an IANA name) or else UTC."""
    start = rb.detected_at or rb.created_at
    end = rb.finished_at or utcnow()
    return render("user_notification.md.j2", when=time_range(start, end, tz))


def status_payload(rb: Rollback, status: PageStatus, at: datetime) -> dict[str, Any]:
    """Return the JSON body the status page receives."""
    return {
        "status": status.value,
        "service": rb.service,
        "environment": rb.environment,
        "rollback_id": rb.id,
        "message": render("status_page.txt.j2", rb=rb, status=status.value),
        "at": at.isoformat(timespec="seconds"),
    }


async def post_status(settings: StatusPageConfig, payload: dict[str, Any]) -> None:
    """POST one status, retrying 5xx and 429 (never a timeout: it may have landed)."""
    headers = {"Content-Type": "application/json"}
    if settings.secret_header and settings.secret_env:
        secret = token_from(settings.secret_env)
        if secret is None:
            raise Refused(f"Status page: environment variable {settings.secret_env} is not set")
        headers[settings.secret_header] = secret.get_secret_value()
    async with new_client(settings.timeout_seconds) as client:

        async def once() -> None:
            response = await send(
                client, "POST", settings.url, what="Status page", json=payload, headers=headers
            )
            if not response.is_success:
                raise error_for(response, "Status page")

        await retrying(
            once,
            attempts=settings.attempts,
            deadline_seconds=settings.timeout_seconds * settings.attempts,
        )


@dataclass(frozen=True)
class Announced:
    """What `announce` did: sent the status, or failed (and why), or neither (done before)."""

    sent: bool = False
    failure: str | None = None


async def announce(engine: Engine, rb: Rollback, status: PageStatus) -> Announced:
    """Send a status once per rollback and record the outcome.

    The claim is taken before sending, so a status is sent at most once even when
    several hooks race; one that failed is not sent again (the checklist keeps
    "Update status page" for a person).
    """
    settings = engine.config.notifications.status_page
    if settings is None or rb.dry_run or rb.drill:
        return Announced()
    claim = Delivery(rollback_id=rb.id, key=f"status_page:{status.value}", actor=BOT)
    if not await engine.deliveries.claim_delivery(claim):
        return Announced()
    at = rb.finished_at if status is PageStatus.RESOLVED and rb.finished_at else utcnow()
    try:
        await post_status(settings, status_payload(rb, status, at))
    except ProviderError as exc:
        log.warning(
            "status page not updated", rollback_id=rb.id, status=status.value, error=exc.message
        )
        text = f"Status page not updated ({status.value}): {exc.message}"
        await engine.record(rb, BOT, STATUS_FAILED_EVENT, text, status=status.value)
        return Announced(failure=exc.message)
    await engine.record(rb, BOT, STATUS_EVENT, status_event_text(status), status=status.value)
    return Announced(sent=True)
