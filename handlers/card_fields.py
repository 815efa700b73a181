"""The card's version fields: what runs, what ran before and what was tried, by state.

A card outlives the moment it was drawn for, so each state says only what is true of it:
before anything runs, what runs and where it would go (once retried, what ran before);
while it runs, what was running and where it goes; once it succeeded, what runs now and
what ran before; once it failed or stopped, what ran before, what was tried and where the
platform says it stands; when it never ran (cancelled, rejected, expired, a dry run), that
the version is unchanged.
"""

from __future__ import annotations

from bot.models import ACTIVE_STATES, ENDED_BADLY, Rollback, State, StepStatus
from bot.text import escape

NEVER_RAN = frozenset({State.CANCELLED, State.REJECTED, State.EXPIRED})


def _code(version: str) -> str:
    return f"`{escape(version)}`"


def _after_success(rb: Rollback) -> str:
    """Say what runs after a success: the target, or the old version with a commit reverted."""
    if rb.bad_commit:
        return f"{_code(rb.shown_current)} with commit `{escape(rb.bad_commit)}` reverted"
    return _code(rb.shown_running)


def version_fields(rb: Rollback) -> list[tuple[str, str]]:
    """Return the card's (title, value) fields about versions for the rollback's state."""
    before, target = _code(rb.shown_current), _code(rb.shown_target)
    state_now = escape(rb.target_state or "not recorded")
    if rb.state is State.SUCCEEDED:
        return [("Running now", _after_success(rb)), ("Before the rollback", before)]
    if rb.state in ENDED_BADLY:
        return [
            ("Before the rollback", before),
            ("Tried to roll back to", target),
            ("State now", state_now),
        ]
    if rb.state in ACTIVE_STATES:
        return [("Was running", before), ("Rolling back to", target)]
    if rb.dry_run:
        return [("Running now", before), ("Would roll back to", target)]
    if rb.state in NEVER_RAN:
        if rb.target_state:
            # Cancelled because the service was redeployed since: it runs something else.
            return [
                ("Ran when requested", before),
                ("Would have rolled back to", target),
                ("State now", state_now),
            ]
        return [("Running now", before), ("Would have rolled back to", target)]
    if any(step.status is StepStatus.DONE for step in rb.steps):
        # Retried after a failure: steps already done changed what runs.
        return [("Before the rollback", before), ("Roll back to", target)]
    return [("Running now", before), ("Roll back to", target)]
