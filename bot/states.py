"""The rollback state machine as one table: every transition, who causes it, and the lock.

The engine changes a rollback's state only by applying an entry of `TRANSITIONS`; the
store applies the state change, the lock change and the audit record in one atomic write.
`python -m bot.states` prints the table as DESIGN.md shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.models import ACTIVE_STATES, FINAL_STATES, State


class Trigger(StrEnum):
    """What moves a rollback; each names one entry of the table."""

    REQUEST = "request"
    CONFIRM_SEVERITY = "confirm_severity"
    FINISH_DRY_RUN = "finish_dry_run"
    AWAIT_APPROVAL = "await_approval"
    APPROVE = "approve"
    APPROVE_BY_POLICY = "approve_by_policy"
    BREAK_GLASS = "break_glass"
    APPROVE_FROM_TERMINAL = "approve_from_terminal"
    START_DRILL = "start_drill"
    START = "start"
    CANCEL_STALE = "cancel_stale"
    VERIFY = "verify"
    ROLL_FORWARD = "roll_forward"
    SUCCEED = "succeed"
    FAIL = "fail"
    INTERRUPT = "interrupt"
    RESUME = "resume"
    ORPHAN = "orphan"
    EXPIRE = "expire"
    REJECT = "reject"
    CANCEL = "cancel"
    RETRY = "retry"


class Who(StrEnum):
    """Who may cause a transition; `bot/access.py` decides who that is for a rollback."""

    REQUESTER = "a requester of the service"
    APPROVER = "an approver other than the requester"
    REQUESTER_OR_APPROVER = "the requester or an approver"
    BREAK_GLASS = "the requester, if an approver, at a break-glass severity"
    OPERATOR = "an operator at the bot's terminal"
    ROLLBOT = "rollbot"


class LockChange(StrEnum):
    """What a transition does to the service+environment lock (a fenced lease)."""

    NONE = "none"
    TAKE = "take"
    KEEP = "keep"
    RELEASE = "release"


@dataclass(frozen=True)
class Transition:
    """One entry of the table."""

    trigger: Trigger
    sources: frozenset[State]
    target: State
    who: Who
    lock: LockChange
    note: str = ""

    @property
    def records(self) -> str:
        """Return the kind its audit record (and timeline line, if any) is written under."""
        return RECORDS.get(self.trigger, self.target.value)

    @property
    def doing(self) -> str:
        """Name the act for a refusal: "Only an approver can {doing}"."""
        return DOING.get(self.trigger, self.trigger.value.replace("_", " ") + " it")


def _entry(
    trigger: Trigger,
    sources: set[State] | frozenset[State],
    target: State,
    who: Who,
    lock: LockChange,
    note: str = "",
) -> Transition:
    return Transition(trigger, frozenset(sources), target, who, lock, note)


DOING: dict[Trigger, str] = {
    Trigger.REQUEST: "request rollbacks",
    Trigger.CONFIRM_SEVERITY: "confirm the severity",
    Trigger.APPROVE: "approve it",
    Trigger.BREAK_GLASS: "approve it",
    Trigger.START_DRILL: "run drills",
    Trigger.REJECT: "reject it",
    Trigger.CANCEL: "cancel this rollback",
    Trigger.RETRY: "retry this rollback",
}

# The kinds the timeline, checklists and reports read (default: the target state's name).
RECORDS: dict[Trigger, str] = {
    Trigger.REQUEST: "requested",
    Trigger.CONFIRM_SEVERITY: "severity",
    Trigger.FINISH_DRY_RUN: "dry_run",
    Trigger.START: "started",
    Trigger.ROLL_FORWARD: "rolling_forward",
    Trigger.RETRY: "retry",
    Trigger.RESUME: "resumed",
}


WAITING = frozenset({State.REQUESTED, State.SEVERITY_CONFIRMED, State.AWAITING_APPROVAL})
# Where a rollback holds the lock: from approval until its outcome.
LOCKED_STATES = frozenset({State.APPROVED, *ACTIVE_STATES})

_TABLE = [
    _entry(
        Trigger.REQUEST,
        set(),
        State.REQUESTED,
        Who.REQUESTER,
        LockChange.NONE,
        "claims the one open slot of its service+environment",
    ),
    _entry(
        Trigger.CONFIRM_SEVERITY,
        {State.REQUESTED},
        State.SEVERITY_CONFIRMED,
        Who.REQUESTER_OR_APPROVER,
        LockChange.NONE,
    ),
    _entry(
        Trigger.FINISH_DRY_RUN,
        {State.SEVERITY_CONFIRMED},
        State.CANCELLED,
        Who.ROLLBOT,
        LockChange.NONE,
        "a dry run stops before approval",
    ),
    _entry(
        Trigger.AWAIT_APPROVAL,
        {State.SEVERITY_CONFIRMED},
        State.AWAITING_APPROVAL,
        Who.ROLLBOT,
        LockChange.NONE,
    ),
    _entry(
        Trigger.APPROVE,
        {State.AWAITING_APPROVAL},
        State.APPROVED,
        Who.APPROVER,
        LockChange.TAKE,
        "once the policy's number of approvals is reached",
    ),
    _entry(
        Trigger.APPROVE_BY_POLICY,
        {State.AWAITING_APPROVAL},
        State.APPROVED,
        Who.ROLLBOT,
        LockChange.TAKE,
        "the policy requires no approval",
    ),
    _entry(
        Trigger.BREAK_GLASS,
        {State.AWAITING_APPROVAL},
        State.APPROVED,
        Who.BREAK_GLASS,
        LockChange.TAKE,
        "with a recorded reason",
    ),
    _entry(
        Trigger.APPROVE_FROM_TERMINAL,
        {State.AWAITING_APPROVAL},
        State.APPROVED,
        Who.OPERATOR,
        LockChange.TAKE,
        "break-glass for when Slack is down, with a recorded reason",
    ),
    _entry(
        Trigger.START_DRILL,
        {State.REQUESTED},
        State.APPROVED,
        Who.REQUESTER,
        LockChange.TAKE,
        "drills run only outside protected environments",
    ),
    _entry(Trigger.START, {State.APPROVED}, State.RUNNING, Who.ROLLBOT, LockChange.KEEP),
    _entry(
        Trigger.CANCEL_STALE,
        {State.APPROVED},
        State.CANCELLED,
        Who.ROLLBOT,
        LockChange.RELEASE,
        "the service was redeployed since the request",
    ),
    _entry(Trigger.VERIFY, {State.RUNNING}, State.VERIFYING, Who.ROLLBOT, LockChange.KEEP),
    _entry(
        Trigger.ROLL_FORWARD,
        {State.VERIFYING},
        State.RUNNING,
        Who.ROLLBOT,
        LockChange.KEEP,
        "a drill's second leg",
    ),
    _entry(Trigger.SUCCEED, {State.VERIFYING}, State.SUCCEEDED, Who.ROLLBOT, LockChange.RELEASE),
    _entry(Trigger.FAIL, ACTIVE_STATES, State.FAILED, Who.ROLLBOT, LockChange.RELEASE),
    _entry(
        Trigger.INTERRUPT,
        LOCKED_STATES,
        State.INTERRUPTED,
        Who.ROLLBOT,
        LockChange.RELEASE,
        "rollbot stopped while it ran",
    ),
    _entry(
        Trigger.RESUME,
        LOCKED_STATES,
        State.RUNNING,
        Who.ROLLBOT,
        LockChange.KEEP,
        "its owner's lease expired; taken over, the platform asked what runs, and the "
        "first step not done run",
    ),
    _entry(
        Trigger.ORPHAN,
        LOCKED_STATES,
        State.INTERRUPTED,
        Who.ROLLBOT,
        LockChange.RELEASE,
        "its owner's lease expired and what runs cannot be told apart from a half-done step",
    ),
    _entry(
        Trigger.EXPIRE,
        WAITING,
        State.EXPIRED,
        Who.ROLLBOT,
        LockChange.NONE,
        "no approval within the policy's time",
    ),
    _entry(Trigger.REJECT, WAITING, State.REJECTED, Who.APPROVER, LockChange.NONE),
    _entry(
        Trigger.CANCEL,
        {*WAITING, State.APPROVED},
        State.CANCELLED,
        Who.REQUESTER_OR_APPROVER,
        LockChange.RELEASE,
    ),
    _entry(
        Trigger.RETRY,
        {State.FAILED},
        State.APPROVED,
        Who.REQUESTER_OR_APPROVER,
        LockChange.TAKE,
        "from the failed step; finished steps are not run again",
    ),
]

TRANSITIONS: dict[Trigger, Transition] = {entry.trigger: entry for entry in _TABLE}


def holds_lock(state: State) -> bool:
    """Return True for the states in which a rollback must hold its service's lock."""
    return state in LOCKED_STATES


def _check_table() -> None:
    """Fail at import when the table contradicts the lock rule or misses a trigger."""
    assert set(TRANSITIONS) == set(Trigger), "every trigger needs one entry"
    for entry in _TABLE:
        assert entry.lock is not LockChange.TAKE or holds_lock(entry.target), entry
        assert entry.target not in FINAL_STATES or entry.lock in {
            LockChange.RELEASE,
            LockChange.NONE,
        }, entry
        if entry.lock is LockChange.KEEP:
            assert all(holds_lock(s) for s in entry.sources) and holds_lock(entry.target), entry


_check_table()


def markdown() -> str:
    """Render the table as Markdown, as DESIGN.md shows it."""
    rows = [
        "| trigger | from | to | who may cause it | lock | recorded as | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in _TABLE:
        sources = ", ".join(s.value for s in State if s in entry.sources) or "(new)"
        rows.append(
            f"| `{entry.trigger.value}` | {sources} | {entry.target.value} | "
            f"{entry.who.value} | {entry.lock.value} | `{entry.records}` | {entry.note} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())
