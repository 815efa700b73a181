"""Block Kit for the rollback card, its thread replies and the reason modal."""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.errors import Purpose
from bot.freezes import freeze_line
from bot.matrix import FIX_FORWARD_WHEN, ROLLBACK_WHEN, Action, MatrixRow
from bot.models import FINAL_STATES, PlanStep, Rollback, State, StepStatus
from bot.policy import ApprovalPolicy
from bot.preflight import VERDICT_ICONS
from bot.text import escape, mention, quote_user_text
from handlers.card_fields import version_fields
from handlers.fit import FIELD_TEXT_MAX, SECTION_TEXT_MAX, fit_blocks, shorten
from handlers.ids import REASON_INPUT, ActionId, BlockId, CallbackId

MAX_BLOCKS = 50
STATE_ICONS = {
    State.REQUESTED: ":mag:",
    State.SEVERITY_CONFIRMED: ":white_check_mark:",
    State.AWAITING_APPROVAL: ":hourglass_flowing_sand:",
    State.APPROVED: ":+1:",
    State.RUNNING: ":arrows_counterclockwise:",
    State.VERIFYING: ":stethoscope:",
    State.SUCCEEDED: ":large_green_circle:",
    State.FAILED: ":red_circle:",
    State.CANCELLED: ":no_entry_sign:",
    State.REJECTED: ":no_entry:",
    State.EXPIRED: ":hourglass:",
    State.INTERRUPTED: ":warning:",
}


STEP_ICONS = {
    StepStatus.PENDING: ":white_circle:",
    StepStatus.RUNNING: ":arrows_counterclockwise:",
    StepStatus.DONE: ":white_check_mark:",
    StepStatus.SKIPPED: ":heavy_minus_sign:",
    StepStatus.FAILED: ":x:",
    StepStatus.NOT_RUN: ":black_square_button:",
}


def dump(blocks: list[Block]) -> list[dict[str, Any]]:
    """Validate and serialise blocks; past Slack's 50, the last block says how many are left."""
    return fit_blocks([block.to_dict() for block in blocks], MAX_BLOCKS)


def _md(text: str, where: str = "") -> MarkdownTextObject:
    return MarkdownTextObject(text=shorten(text, SECTION_TEXT_MAX, where))


def _field(title: str, value: str) -> MarkdownTextObject:
    """A card field: its title in bold, its value below, within Slack's 2,000 characters."""
    return MarkdownTextObject(text=shorten(f"*{title}*\n{value}", FIELD_TEXT_MAX))


def _everything_in(rb: Rollback) -> str:
    return f"`/rollback report {rb.id}` has all of it"


def _people(policy: ApprovalPolicy) -> str:
    names = [mention(u) for u in policy.approvers.users]
    names += [f"<!subteam^{g}>" for g in policy.approvers.groups]
    return ", ".join(names) if names else "anyone but the requester"


def _issue_option(key: str, row: MatrixRow) -> Option:
    return Option(value=key, label=f"{row.label} ({row.severity.value})"[:75])


def card(
    rb: Rollback,
    matrix: dict[str, MatrixRow],
    policy: ApprovalPolicy,
    *,
    preview_issue: str | None = None,
    last_step: str | None = None,
) -> list[dict[str, Any]]:
    """Build the rollback card: what runs, the target, the plan, the decision and status."""
    title = f"{'Dry run: ' if rb.dry_run else ''}Rollback {rb.service}/{rb.environment}"
    versions = version_fields(rb)
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=title[:150])),
        SectionBlock(
            fields=[
                _field("Service", rb.service),
                _field("Environment", rb.environment),
                *(_field(title, value) for title, value in versions[:2]),
                _field("Requested by", mention(rb.requested_by)),
                _field("Status", f"{STATE_ICONS[rb.state]} {rb.state.label}"),
                *(_field(title, value) for title, value in versions[2:]),
            ]
        ),
        *_plan_blocks(rb),
        DividerBlock(),
    ]
    blocks += _decision_blocks(rb, matrix, policy, preview_issue)
    blocks += _status_blocks(rb, policy, last_step)
    blocks.append(ContextBlock(elements=[_md(f"Rollback `{rb.id}`")]))
    return dump(blocks)


def _preflight_lines(step: PlanStep, indent: str = "") -> list[str]:
    """The step's preflight: exact identities, each check with its verdict, what changes."""
    lines = []
    if step.identity_target:
        now = f"`{escape(step.identity_current)}`" if step.identity_current else "?"
        lines.append(f"{indent}*Exactly:* {now} → `{escape(step.identity_target)}`")
    for item in step.preflight:
        icon = VERDICT_ICONS.get(item.verdict, ":grey_question:")
        lines.append(f"{indent}{icon} `{escape(item.name)}` {escape(item.why)}")
    lines += [f"{indent}↳ {escape(change)}" for change in step.changes]
    if lines:
        lines.insert(0, f"{indent}*Preflight*")
    return lines


def _warning_lines(warnings: list[str], step: PlanStep | None, indent: str = "") -> list[str]:
    """The plan's warnings, but not those the step's preflight already shows."""
    shown = {item.why for item in step.preflight} if step is not None else set()
    return [f"{indent}:warning: {escape(w)}" for w in warnings if w not in shown]


def _plan_blocks(rb: Rollback) -> list[Block]:
    if not rb.multi_step:
        lines = ["*Plan*"] + [f"{i}. {escape(step)}" for i, step in enumerate(rb.plan, 1)]
        lines += _warning_lines(rb.warnings, rb.steps[0] if rb.steps else None)
        blocks: list[Block] = [SectionBlock(text=_md("\n".join(lines), _everything_in(rb)))]
        checked = _preflight_lines(rb.steps[0]) if rb.steps else []
        if checked:
            blocks.append(SectionBlock(text=_md("\n".join(checked), _everything_in(rb))))
        return blocks
    # One section per step: each has Slack's 3000-character room of its own.
    blocks = [
        SectionBlock(
            text=_md(
                f"*Plan: {len(rb.steps)} steps, run in order.* "
                "If one fails, the steps after it do not run."
            )
        )
    ]
    for i, step in enumerate(rb.steps, 1):
        status = "" if step.status is StepStatus.PENDING else f" ({step.status.value})"
        lines = [f"{STEP_ICONS[step.status]} *{i}. {escape(step.heading)}*{status}"]
        lines += [f"        • {escape(line)}" for line in step.plan]
        lines += _warning_lines(step.warnings, step, indent="        ")
        lines += _preflight_lines(step, indent="        ")
        blocks.append(SectionBlock(text=_md("\n".join(lines), _everything_in(rb))))
    return blocks


def _decision_blocks(
    rb: Rollback, matrix: dict[str, MatrixRow], policy: ApprovalPolicy, preview: str | None
) -> list[Block]:
    if rb.state is not State.REQUESTED:
        if rb.severity is None:
            return []
        row = matrix.get(rb.issue or "")
        label = row.label if row else rb.issue
        text = f"*Severity:* {rb.severity} ({label}) → {rb.action}"
        if rb.override_reason:
            text += f"\n*Fix-forward overridden:* {quote_user_text(rb.override_reason)}"
        return [SectionBlock(text=_md(text))]
    chosen = matrix.get(preview or "")
    select = StaticSelectElement(
        action_id=ActionId.ISSUE_SELECT,
        placeholder=PlainTextObject(text="Pick the issue type"),
        options=[_issue_option(key, row) for key, row in matrix.items()],
        initial_option=_issue_option(preview, chosen) if preview and chosen else None,
    )
    blocks: list[Block] = [
        SectionBlock(
            block_id=f"{BlockId.MATRIX}:{rb.id}",
            text=_md("*Decision matrix:* what is the issue?"),
            accessory=select,
        )
    ]
    if chosen:
        verdict = f"*Severity:* {chosen.severity.value} → *{chosen.action.value}*"
        if chosen.action is Action.FIX_FORWARD:
            verdict += "\nThe guide says fix forward; confirming asks for a reason to override."
        blocks.append(SectionBlock(text=_md(verdict)))
    blocks.append(
        ContextBlock(
            elements=[
                _md("*Roll back when:* " + "; ".join(ROLLBACK_WHEN)),
                _md("*Fix forward when:* " + "; ".join(FIX_FORWARD_WHEN)),
            ]
        )
    )
    confirm_label = "Confirm severity" + (" (dry run)" if rb.dry_run else "")
    blocks.append(
        ActionsBlock(
            elements=[
                ButtonElement(
                    text=confirm_label,
                    action_id=ActionId.CONFIRM_SEVERITY,
                    value=rb.id,
                    style="primary",
                ),
                ButtonElement(text="Cancel", action_id=ActionId.CANCEL, value=rb.id),
            ]
        )
    )
    return blocks


def _status_blocks(rb: Rollback, policy: ApprovalPolicy, last_step: str | None) -> list[Block]:
    if rb.state is State.AWAITING_APPROVAL:
        got = len(rb.approved_by)
        text = (
            f"*Approval needed* ({got} of {policy.required_approvals}) from {_people(policy)}."
            f"\n{mention(rb.requested_by)} cannot approve their own rollback"
            + (
                " unless they are an approver and it is "
                f"{', '.join(s.value for s in policy.break_glass.severities)} "
                "(break-glass, with a reason)."
                if policy.break_glass.enabled
                else "."
            )
        )
        if rb.danger:
            text += "\n:warning: *This plan deletes data:* " + escape("; ".join(rb.danger))
        return [
            SectionBlock(text=_md(text)),
            ActionsBlock(
                elements=[
                    _approve_button(rb),
                    ButtonElement(
                        text="Reject", action_id=ActionId.REJECT, value=rb.id, style="danger"
                    ),
                    ButtonElement(text="Cancel", action_id=ActionId.CANCEL, value=rb.id),
                ]
            ),
        ]
    lines = []
    if rb.approved_by:
        lines.append("*Approved by:* " + ", ".join(mention(u) for u in rb.approved_by))
    if rb.break_glass_reason:
        lines.append(f"*Break-glass:* {quote_user_text(rb.break_glass_reason)}")
    if last_step and rb.state not in FINAL_STATES:
        lines.append(f"*Now:* {escape(last_step)}")
    if rb.state in FINAL_STATES and rb.error:
        lines.append(f"*Outcome:* {escape(rb.error)}")
    if rb.state is State.SUCCEEDED:
        checked = rb.verification or "verification not recorded"
        lines.append(f"*Outcome:* running {escape(rb.shown_running)} ({checked}).")
        if rb.freeze is not None and rb.freeze.active:
            frozen = freeze_line(rb)
            lines.append(f":ice_cube: *Freeze:* {escape(frozen)}")
        elif rb.freeze is not None:
            lines.append(f"*Freeze:* ended by {mention(rb.freeze.ended_by or 'rollbot')}.")
    if rb.dry_run and rb.state is State.CANCELLED:
        lines.append(f"Approval would be needed from {_people(policy)}.")
    blocks: list[Block] = [SectionBlock(text=_md("\n".join(lines), _everything_in(rb)))]
    if rb.state is State.SUCCEEDED and rb.freeze is not None and rb.freeze.active:
        blocks.append(ActionsBlock(elements=[_unfreeze_button(rb)]))
    return blocks if lines else []


def _unfreeze_button(rb: Rollback) -> ButtonElement:
    """Unfreeze from the card: an approver's act, checked as `/rollback unfreeze` is."""
    assert rb.freeze is not None
    acted = any(entry.acted for entry in rb.freeze.entries)
    return ButtonElement(
        # What the freeze paused (auto-deploys, an Argo CD auto-sync) resumes with it.
        text="Unfreeze (resume what the freeze paused)" if acted else "Unfreeze",
        action_id=ActionId.UNFREEZE,
        value=rb.id,
        confirm=ConfirmObject(
            title="Unfreeze?",
            text=(
                f"{rb.shown(rb.freeze.bad)} may be deployed to {rb.service}/{rb.environment} again."
            )[:300],
            confirm="Unfreeze",
            deny="Keep frozen",
        ),
    )


def _approve_button(rb: Rollback) -> ButtonElement:
    what = f"Roll {rb.service}/{rb.environment} back to {rb.shown_target}."
    failing = rb.preflight_failures
    if failing:
        # Approve is off while a check fails: this button asks for break-glass instead,
        # whose reason must name each failing check (the engine enforces it).
        names = ", ".join(item.name for item in failing)
        return ButtonElement(
            text="Preflight failed: break-glass…",
            action_id=ActionId.APPROVE_DANGER if rb.danger else ActionId.APPROVE,
            value=rb.id,
            style="danger",
            confirm=ConfirmObject(
                title="Override preflight?",
                text=f"{what} Preflight failed: {names}. You will be asked for a reason that "
                "names each check you override; it is recorded."[:300],
                confirm="Give the reason",
                deny="Not yet",
                style="danger",
            ),
        )
    if not rb.danger:
        return ButtonElement(
            text="Approve",
            action_id=ActionId.APPROVE,
            value=rb.id,
            style="primary",
            confirm=ConfirmObject(
                title="Approve rollback?", text=what, confirm="Approve", deny="Not yet"
            ),
        )
    danger = "; ".join(rb.danger)
    return ButtonElement(
        text="Approve, data will be deleted",
        action_id=ActionId.APPROVE_DANGER,
        value=rb.id,
        style="danger",
        confirm=ConfirmObject(
            title="Delete data?",
            text=f"{what} This plan cannot be fully undone: {danger}"[:300],
            confirm="Approve and delete",
            deny="Not yet",
            style="danger",
        ),
    )


def failure_options(rb: Rollback) -> list[dict[str, Any]]:
    """Build the guide's options after a failure: retry the step, restore the db, fix forward."""
    buttons = []
    if rb.failed_step is not None:
        step = rb.steps[rb.failed_step].name if rb.steps else rb.service
        buttons.append(
            ButtonElement(
                text=f"Retry step {rb.failed_step + 1} ({step})"[:75],
                action_id=ActionId.RETRY_STEP,
                value=rb.id,
                style="primary",
            )
        )
    if rb.touched_database:
        buttons.append(
            ButtonElement(
                text="Restore database…", action_id=ActionId.RESTORE_DATABASE, value=rb.id
            )
        )
    buttons.append(ButtonElement(text="Fix forward", action_id=ActionId.FIX_FORWARD, value=rb.id))
    return dump(
        [
            SectionBlock(block_id=f"{BlockId.OPTIONS}:{rb.id}", text=_md("*What now?*")),
            ActionsBlock(elements=buttons),
        ]
    )


def reason_modal(rollback_id: str, purpose: Purpose, prompt: str, extra: dict[str, str]) -> View:
    """Build the modal that asks for an override or break-glass reason."""
    title = "Override matrix" if purpose is Purpose.OVERRIDE else "Break-glass"
    metadata = json.dumps({"rollback_id": rollback_id, "purpose": purpose, **extra})
    return View(
        type="modal",
        callback_id=CallbackId.REASON,
        title=PlainTextObject(text=title),
        submit=PlainTextObject(text="Submit"),
        close=PlainTextObject(text="Back"),
        private_metadata=metadata,
        blocks=[
            SectionBlock(text=_md(escape(prompt))),
            InputBlock(
                block_id=BlockId.REASON,
                label=PlainTextObject(text="Reason (recorded)"),
                element=PlainTextInputElement(
                    action_id=REASON_INPUT, multiline=True, min_length=5, max_length=500
                ),
            ),
        ],
    )
