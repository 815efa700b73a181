"""The guide's incident report of a rollback, filled with everything the bot recorded.

What only people know (impact, root cause, prevention) is left as explicit prompts.
The report is a Markdown file, so people appear by name, not as Slack mentions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.matrix import MatrixRow
from bot.models import ENDED_BADLY, Event, Rollback, State, StepStatus, utcnow
from bot.render import render_document
from bot.text import SLACK_USER, one_line
from bot.time_words import duration
from bot.timeline import Entry, Timeline, build

TEMPLATE = "incident_report.md.j2"
# Endings that get a report on their own; a request cancelled, rejected or expired
# before anything ran changed nothing, and a report of it would be noise.
REPORTED_STATES = frozenset({State.SUCCEEDED, State.FAILED, State.INTERRUPTED})
_MENTION = re.compile(r"<@([UW][A-Z0-9_]{1,20})>")


def to_write(prompt: str) -> str:
    """Return the marker of a part people fill in."""
    return f"_To be written: {prompt}_"


def filename(rollback: Rollback) -> str:
    """Return the name of the report file."""
    return f"incident-{rollback.id}.md"


def report_key(rollback: Rollback) -> str:
    """Return what identifies one ending of a rollback (a retry that ends again is another)."""
    ended = rollback.finished_at or rollback.updated_at
    return f"{rollback.state.value}@{ended.astimezone(UTC).isoformat()}"


def people(
    rollback: Rollback, events: Iterable[Event], checklist: Sequence[Any] | None = None
) -> set[str]:
    """Return the Slack user ids the report names, to look up their readable names."""
    ids = {rollback.requested_by, *rollback.approved_by, rollback.fix_forward_by or ""}
    for event in events:
        ids.add(event.actor)
        ids.update(_MENTION.findall(event.text))
    ids.update(_MENTION.findall(rollback.error or ""))
    for section in checklist or []:
        for item in _get(section, "items") or []:
            ids.add(str(_get(item, "by") or ""))
    return {user for user in ids if SLACK_USER.fullmatch(user)}


def _get(thing: Any, name: str) -> Any:
    """Read a field of a checklist section or item, given as a mapping or an object."""
    if isinstance(thing, Mapping):
        return thing.get(name)
    return getattr(thing, name, None)


@dataclass(frozen=True)
class _Line:
    clock: str
    what: str
    detail: str | None
    who: str
    milestone: bool


class _Names:
    """Readable names for user ids; mentions inside recorded texts become names too."""

    def __init__(self, names: Mapping[str, str] | None) -> None:
        self._names = dict(names or {})

    def __call__(self, user: str | None) -> str:
        if not user:
            return ""
        return self._names.get(user, user)

    def text(self, text: str) -> str:
        """Replace Slack mentions in a recorded text with names."""
        return _MENTION.sub(lambda m: self(m.group(1)), text)


def render_report(
    rollback: Rollback,
    events: Sequence[Event],
    *,
    matrix: Mapping[str, MatrixRow],
    names: Mapping[str, str] | None = None,
    checklist: Sequence[Any] | None = None,
    now: datetime | None = None,
) -> str:
    """Render the incident report of a rollback as Markdown.

    `checklist`: optional sections, each with `title` and `items` of `label`, `done`, `by`
    (mappings or objects), rendered as a "Checklist" section.
    """
    who = _Names(names)
    timeline = build(rollback, events)
    row = matrix.get(rollback.issue or "")
    return render_document(
        TEMPLATE,
        rb=rollback,
        date=timeline.detected_at.astimezone(UTC).strftime("%Y-%m-%d"),
        generated=(now or utcnow()).astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
        outcome=outcome(rollback),
        summary=_summary(rollback, row, who),
        facts=[(label, _cell(value)) for label, value in _facts(rollback, row, events, who)],
        lines=_lines(timeline, who),
        durations=durations(rollback, timeline),
        downtime=_downtime(rollback, timeline),
        data_loss=_data_loss(rollback),
        steps=[
            {
                "heading": _cell(step.heading),
                "status": step.status.value,
                "result": _cell(step.result or ""),
                "plan": step.plan,
            }
            for step in rollback.steps
        ],
        verification_table=_fenced(rollback.verification_table),
        target_state=_fenced(rollback.target_state),
        error=_sentence(who.text(rollback.error)) if rollback.error else None,
        fix_forward_by=who(rollback.fix_forward_by) if rollback.fix_forward_by else None,
        ended=rollback.state in REPORTED_STATES,
        checklist=_checklist(checklist, who),
        to_write=to_write,
    )


def outcome(rollback: Rollback) -> str:
    """Say in a few words how the rollback ended (or where it stands)."""
    if rollback.state is State.SUCCEEDED:
        if _verified(rollback):
            return f"succeeded, verification passed ({rollback.verification})"
        return "succeeded; no health checks are configured, so health was NOT verified"
    return rollback.state.label


def summary(rollback: Rollback, timeline: Timeline) -> str:
    """Say in one line how the rollback ended and how long it took (for the upload's comment)."""
    what = (
        f"{rollback.service}/{rollback.environment} {rollback.shown_current} → "
        f"{rollback.shown_target}"
    )
    said = f"Incident report of rollback {rollback.id} ({what}): {outcome(rollback)}"
    if rollback.error and rollback.state is not State.SUCCEEDED:
        said += f": {rollback.error}"
    said = said.rstrip(".") + "."
    if timeline.detected_to_restored is not None:
        said += f" Detected → restored: {duration(timeline.detected_to_restored)}."
    return said


def _verified(rollback: Rollback) -> bool:
    checked = rollback.verification not in {None, "no checks configured"}
    return rollback.state is State.SUCCEEDED and checked


def _issue(rollback: Rollback, row: MatrixRow | None) -> str:
    if rollback.severity is None:
        return "an issue whose severity was not confirmed"
    label = row.label if row else rollback.issue
    return f"“{label}” (severity {rollback.severity}; decision matrix: {rollback.action})"


def _summary(rollback: Rollback, row: MatrixRow | None, who: _Names) -> str:
    what = f"{rollback.service}/{rollback.environment}"
    versions = f"from `{rollback.shown_current}` to `{rollback.shown_target}`"
    issue = _issue(rollback, row)
    if rollback.state is State.SUCCEEDED:
        text = f"{what} was rolled back {versions} after {issue}. The rollback {outcome(rollback)}."
    elif rollback.state in ENDED_BADLY:
        text = (
            f"A rollback of {what} {versions}, after {issue}, {rollback.state.label}: "
            + _sentence(who.text(rollback.error or "no reason recorded"))
        )
    else:
        text = f"A rollback of {what} {versions} was requested after {issue}; it is "
        text += f"{rollback.state.label}."
    text += f" Requested by {who(rollback.requested_by)}"
    if rollback.approved_by:
        text += f", approved by {', '.join(who(u) for u in rollback.approved_by)}"
    return text + "."


def _target_label(rollback: Rollback) -> str:
    """Name the target as far as the rollback got: done, tried, or only asked for."""
    if rollback.state is State.SUCCEEDED:
        return "Rolled back to"
    if rollback.state in ENDED_BADLY:
        return "Tried to roll back to"
    return "Asked to roll back to"


def _facts(
    rollback: Rollback, row: MatrixRow | None, events: Sequence[Event], who: _Names
) -> list[tuple[str, str]]:
    approvers = ", ".join(who(u) for u in rollback.approved_by)
    if rollback.break_glass_reason:
        approvers += " (break-glass)"
    elif not approvers and any(e.kind == "approved" and e.actor == "policy" for e in events):
        approvers = "no approval needed by policy"
    facts = [
        ("Rollback", f"`{rollback.id}`" + (" (drill)" if rollback.drill else "")),
        ("Service", rollback.service),
        ("Environment", rollback.environment),
        ("Version before", f"`{rollback.shown_current}`"),
        (_target_label(rollback), f"`{rollback.shown_target}`"),
        ("Outcome", outcome(rollback)),
        ("Requested by", who(rollback.requested_by)),
        ("Approved by", approvers or "not approved"),
        ("Severity", rollback.severity or "not confirmed"),
        ("Issue", (row.label if row else rollback.issue) or "not confirmed"),
        ("Decision matrix", rollback.action or "not confirmed"),
    ]
    if rollback.override_reason:
        facts.append(("Fix-forward overridden because", rollback.override_reason))
    if rollback.break_glass_reason:
        facts.append(("Break-glass reason", rollback.break_glass_reason))
    if rollback.bad_commit:
        facts.append(("Reverted commit", f"`{rollback.bad_commit}`"))
    if rollback.verification:
        facts.append(("Verification", rollback.verification))
    if rollback.fix_forward_by:
        facts.append(("Fix forward decided by", who(rollback.fix_forward_by)))
    return facts


def _lines(timeline: Timeline, who: _Names) -> list[_Line]:
    return [
        _Line(
            clock=timeline.clock(entry.at),
            what=who.text(entry.what),
            detail=_detail(entry, who),
            who=who(entry.actor),
            milestone=entry.milestone,
        )
        for entry in timeline.entries
    ]


def _detail(entry: Entry, who: _Names) -> str | None:
    """Return a line's detail with names for mentions; a typed one stays on its line."""
    if not entry.detail:
        return None
    detail = who.text(entry.detail)
    return one_line(detail) if entry.typed else detail


def durations(rollback: Rollback, timeline: Timeline) -> list[tuple[str, str]]:
    """Return the guide's three durations as (label, words), saying which are not known yet."""
    ended = rollback.state in REPORTED_STATES
    took, down = timeline.initiated_to_completed, timeline.detected_to_restored
    completed = duration(took) if took is not None else ("did not complete" if ended else "not yet")
    if down is not None:
        restored = duration(down)
    elif rollback.state is State.SUCCEEDED:
        restored = "not verified (no health checks)"
    else:
        restored = "not restored by the rollback" if ended else "not yet"
    return [
        ("Detected → initiated", duration(timeline.detected_to_initiated)),
        ("Initiated → completed", completed),
        ("Detected → restored", restored),
    ]


def _downtime(rollback: Rollback, timeline: Timeline) -> str:
    if timeline.detected_to_restored is not None:
        return (
            f"{duration(timeline.detected_to_restored)} from detection to verified "
            "recovery (detected → restored). "
            + to_write("were users affected before the issue was detected? Since when?")
        )
    if rollback.state in REPORTED_STATES and rollback.finished_at:
        since = duration(rollback.finished_at - timeline.detected_at)
        if rollback.state is State.SUCCEEDED:
            return f"at least {since} (detection to the end of an unverified rollback). " + (
                to_write("when was service really restored?")
            )
        return f"not ended by the rollback, which {rollback.state.label} {since} after " + (
            "detection. " + to_write("when was service restored, and how?")
        )
    return to_write(f"the rollback is {rollback.state.label}; fill this in once it ends.")


def _data_loss(rollback: Rollback) -> str:
    notes = []
    if rollback.touched_database:
        notes.append(
            "A database step ran; it backs the database up first (the backup's name is in "
            "the timeline)."
        )
    deleted = [s.danger for s in rollback.steps if s.danger and s.status is StepStatus.DONE]
    if deleted:
        notes.append("The plan deleted data by design: " + "; ".join(deleted) + ".")
    return " ".join([to_write("Yes/No, and what?"), *notes])


def _checklist(checklist: Sequence[Any] | None, who: _Names) -> list[dict[str, Any]]:
    return [
        {
            "title": str(_get(section, "title") or "Checklist"),
            "items": [
                {
                    "label": str(_get(item, "label") or ""),
                    "done": bool(_get(item, "done")),
                    "by": who(str(_get(item, "by") or "")),
                }
                for item in _get(section, "items") or []
            ],
        }
        for section in checklist or []
    ]


def _sentence(text: str) -> str:
    """End a recorded text with a full stop unless it has its own."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _cell(value: str) -> str:
    """Make a value safe inside a Markdown table cell."""
    return " ".join(value.split()).replace("|", "\\|")


def _fenced(text: str | None) -> str | None:
    """Return text in a code fence longer than any run of backticks inside it."""
    if not text:
        return None
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"
