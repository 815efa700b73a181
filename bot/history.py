"""`/rollback history`: recent rollbacks and drills, newest first, each kind on its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.engine import Engine
from bot.errors import InvalidRequest, NotAllowed
from bot.models import FINAL_STATES, Event, Rollback, State, utcnow
from bot.render import render
from bot.text import Mrkdwn, mention, quote_user_text, safe
from bot.time_words import duration

SHOWN = 15  # of each kind
SCANNED = 500  # newest records read to find them; drills are rare among rollbacks
SHORT_ERROR = 160

DRILL_OUTCOMES = {State.SUCCEEDED: "passed", State.CANCELLED: "cancelled"}


def _short(text: str | None) -> str | None:
    if not text:
        return None
    line = " ".join(text.split())
    return line if len(line) <= SHORT_ERROR else line[: SHORT_ERROR - 1] + "…"


def _took(rollback: Rollback, now: datetime) -> str:
    """Say how long a rollback took from its request to its outcome (or so far)."""
    end = rollback.finished_at or now
    took = duration(end - rollback.created_at)
    return f"took {took}" if rollback.state in FINAL_STATES else f"open for {took}"


def _joined(*parts: str | None) -> Mrkdwn:
    """Join the parts of a details line, escaping those not made safe already."""
    return Mrkdwn(" · ".join(safe(part) for part in parts if part))


@dataclass(frozen=True)
class RollbackRow:
    """One real rollback as the history shows it."""

    id: str
    where: str
    versions: str
    outcome: str
    took: str
    ran: str | None
    when: str
    severity: str | None
    requested_by: str
    approval: str | None
    error: str | None

    @property
    def details(self) -> Mrkdwn:
        """Say who asked, who approved and what went wrong, on one line."""
        return _joined(
            self.severity, f"requested by {self.requested_by}", self.approval, self.error
        )


@dataclass(frozen=True)
class DrillRow:
    """One drill as the history shows it."""

    id: str
    where: str
    versions: str
    outcome: str
    legs: str | None
    took: str
    when: str
    requested_by: str
    error: str | None

    @property
    def details(self) -> Mrkdwn:
        """Say who ran it and what went wrong, on one line."""
        return _joined(f"by {self.requested_by}", self.error)


def _approval(rollback: Rollback, events: list[Event]) -> str | None:
    if rollback.approved_by:
        who = ", ".join(mention(u) for u in rollback.approved_by)
        reason = rollback.break_glass_reason
        glass = f" (break-glass: {quote_user_text(reason)})" if reason else ""
        return Mrkdwn(f"approved by {who}{glass}")
    if any(e.kind == "approved" for e in events):
        return "no approval needed by policy"
    return None


def _ran(rollback: Rollback, events: list[Event], now: datetime) -> str | None:
    """Say how long it ran: from its first start to its outcome."""
    started = next((e.at for e in events if e.kind == "started"), None)
    if started is None:
        return None
    return f"ran {duration((rollback.finished_at or now) - started)}"


async def _rollback_row(engine: Engine, rb: Rollback, now: datetime) -> RollbackRow:
    events = await engine.records.events(rb.id)
    return RollbackRow(
        id=rb.id,
        where=f"{rb.service}/{rb.environment}",
        versions=f"`{rb.shown_current}` → `{rb.shown_target}`",
        outcome=rb.state.label,
        took=_took(rb, now),
        ran=_ran(rb, events, now),
        when=f"{rb.created_at:%Y-%m-%d %H:%M} UTC",
        severity=rb.severity,
        requested_by=mention(rb.requested_by),
        approval=_approval(rb, events),
        error=_short(rb.error) if rb.state is not State.SUCCEEDED else None,
    )


def _drill_outcome(rollback: Rollback) -> str:
    if rollback.state in DRILL_OUTCOMES:
        return DRILL_OUTCOMES[rollback.state]
    leg = "back (leg 1/2)" if rollback.drill_back_seconds is None else "forward (leg 2/2)"
    if rollback.state in FINAL_STATES:
        return f"{rollback.state.label} going {leg}"
    return f"{rollback.state.label}, going {leg}"


def _legs(rollback: Rollback) -> str | None:
    parts = []
    if rollback.drill_back_seconds is not None:
        parts.append(f"back {duration(rollback.drill_back_seconds)}")
    if rollback.drill_forward_seconds is not None:
        parts.append(f"forward {duration(rollback.drill_forward_seconds)}")
    return ", ".join(parts) or None


def _scope(engine: Engine, service: str | None, environment: str | None) -> str:
    """Check what the command names and say it in words."""
    services = engine.config.services
    if service is not None:
        if environment is not None or service not in services:
            engine.resolve(service, environment)  # raises naming what exists
        return f"{service}/{environment}" if environment else service
    if environment is not None:
        known = sorted({env for svc in services.values() for env in svc.environments})
        if environment not in known:
            raise InvalidRequest(
                f"No service has an environment '{environment}'. Environments: "
                f"{', '.join(known) or 'none'}."
            )
        return f"every service in {environment}"
    return "every service"


async def history_text(
    engine: Engine, service: str | None, environment: str | None, user: str
) -> str:
    """Describe the latest rollbacks and, apart, the latest drills of a service (or all).

    Only what `user` may read is shown; a scope of which they may read nothing is refused.
    """
    scope = _scope(engine, service, environment)
    readable = await engine.access.readable(user)
    if not any(service in (None, s) and environment in (None, e) for s, e in readable):
        raise await engine.refused(
            None,
            user,
            "history",
            NotAllowed(
                f"You may not read the history of {scope}: ask someone who may request or "
                "approve its rollbacks."
            ),
        )
    found = [
        rb
        for rb in await engine.rollbacks.find(
            service=service, environment=environment, limit=SCANNED
        )
        if (rb.service, rb.environment) in readable
    ]
    rollbacks = [rb for rb in found if not rb.drill and not rb.dry_run][:SHOWN]
    drills = [rb for rb in found if rb.drill][:SHOWN]
    if not rollbacks and not drills:
        return f"No rollbacks or drills recorded for {scope} yet."
    now = utcnow()
    rows = [await _rollback_row(engine, rb, now) for rb in rollbacks]
    drill_rows = [
        DrillRow(
            id=rb.id,
            where=f"{rb.service}/{rb.environment}",
            versions=f"`{rb.shown_current}` → `{rb.shown_target}` → `{rb.shown_current}`",
            outcome=_drill_outcome(rb),
            legs=_legs(rb),
            took=_took(rb, now),
            when=f"{rb.created_at:%Y-%m-%d %H:%M} UTC",
            requested_by=mention(rb.requested_by),
            error=_short(rb.error) if rb.state is not State.SUCCEEDED else None,
        )
        for rb in drills
    ]
    return render("history.md.j2", scope=scope, rollbacks=rows, drills=drill_rows, shown=SHOWN)
