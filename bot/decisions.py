"""The decisions people make about a rollback: severity, approval, rejection, cancel, retry.

Each checks who may make it (`bot/access.py`) and applies one entry of the transition
table through `Engine.apply`; part of the Engine (mixed into it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.errors import ChangedSinceShown, Conflict, InvalidRequest, Purpose, ReasonRequired
from bot.matrix import Action
from bot.models import ACTIVE_STATES, Event, Rollback, State, StepStatus
from bot.planning import plan_first, plan_later, shown_names
from bot.preflight import changed_since_shown, unnamed_overrides
from bot.states import Trigger, Who
from bot.text import mention

if TYPE_CHECKING:
    from bot.engine import Engine


def moved_on(current: Rollback) -> Conflict:
    """Refuse because the rollback has moved on; say where it is and who approved it."""
    by = ", ".join(mention(u) for u in current.approved_by)
    tail = f" by {by}" if by and current.state in {State.APPROVED, *ACTIVE_STATES} else ""
    return Conflict(f"Rollback {current.id} is already {current.state.label}{tail}.")


class Decisions:
    """What people decide about a rollback (mixed into Engine)."""

    def _engine(self) -> Engine:
        return self  # type: ignore[return-value]

    async def confirm_severity(
        self, rollback_id: str, issue: str, user: str, override_reason: str | None = None
    ) -> Rollback:
        """Record the issue type; move on to approval, or stop a dry run."""
        engine = self._engine()
        rollback = await engine.get(rollback_id)
        row = engine.config.decision_matrix.get(issue)
        if row is None:
            raise InvalidRequest(f"Unknown issue type {issue!r}.")
        await engine.allowed(Trigger.CONFIRM_SEVERITY, rollback, user)
        reason = (override_reason or "").strip() or None
        if row.action is Action.FIX_FORWARD and reason is None and not rollback.dry_run:
            raise ReasonRequired(
                f"The decision matrix says “{row.action.value}” for {row.label.lower()}. "
                "Give a reason to roll back anyway.",
                purpose=Purpose.OVERRIDE,
            )
        rollback = await engine.apply(
            rollback,
            Trigger.CONFIRM_SEVERITY,
            user,
            f"Severity confirmed: {row.severity.value} ({row.label}) → {row.action.value}",
            details={"issue": issue, "severity": row.severity.value},
            issue=issue,
            severity=row.severity.value,
            action=row.action.value,
            override_reason=reason,
        )
        if reason:
            await engine.record(
                rollback, user, "override", f"Fix-forward overridden: {reason}", reason=reason
            )
        if rollback.dry_run:
            return await engine.apply(
                rollback,
                Trigger.FINISH_DRY_RUN,
                "rollbot",
                "Dry run complete: nothing was changed.",
                error="Dry run: stopped before approval; nothing was changed.",
            )
        rollback = await engine.apply(rollback, Trigger.AWAIT_APPROVAL, "rollbot", None)
        # A plan that deletes data waits for someone to confirm that, whatever the policy.
        if engine.policy(rollback).required_approvals == 0 and not rollback.danger:
            return await engine.apply(
                rollback,
                Trigger.APPROVE_BY_POLICY,
                "policy",
                "Approved: lock taken, starting the rollback",
                approved_by=[],
            )
        return rollback

    async def approve(
        self,
        rollback_id: str,
        user: str,
        break_glass_reason: str | None = None,
        *,
        danger_confirmed: bool = False,
    ) -> Rollback:
        """Record an approval; when enough have come, take the lock and mark it approved."""
        engine = self._engine()
        rollback = await engine.get(rollback_id)
        if rollback.state is not State.AWAITING_APPROVAL:
            raise await engine.refused(
                rollback.id,
                user,
                "approve",
                moved_on(rollback),
            )
        await engine._still_as_shown(rollback, user)
        reason = (break_glass_reason or "").strip() or None
        notes: list[tuple[str, str, str]] = []
        if rollback.preflight_failures:
            notes.append(await engine._override_preflight(rollback, user, reason))
        if rollback.danger:
            await engine._check_danger(rollback, user, danger_confirmed)
            # Recorded with the approval that counts: a refused click confirmed nothing.
            what = "; ".join(rollback.danger)
            notes.append((user, "danger_confirmed", f"Confirmed by {mention(user)}: {what}"))
        policy = engine.policy(rollback)
        if rollback.danger and policy.required_approvals == 0:
            return await engine.apply(
                rollback,
                Trigger.APPROVE_BY_POLICY,
                "policy",
                "Approved: lock taken, starting the rollback",
                notes=notes,
                approved_by=[],
            )
        if user == rollback.requested_by:
            return await engine._break_glass(rollback, user, reason, notes)
        await engine.allowed(Trigger.APPROVE, rollback, user)
        approvers = await engine.rollbacks.add_approval(
            rollback.id,
            user,
            engine._audit(rollback, user, "approval", f"Approved by {mention(user)}"),
            Event(
                rollback_id=rollback.id,
                actor=user,
                kind="approval",
                text=f"Approved by {mention(user)}",
            ),
        )
        if approvers is None:
            current = await engine.get(rollback.id)
            error = (
                Conflict(f"You have approved rollback {rollback.id} already.")
                if current.state is State.AWAITING_APPROVAL
                else moved_on(current)
            )
            raise await engine.refused(rollback.id, user, "approve", error)
        if len(approvers) < policy.required_approvals:
            return await engine.get(rollback.id)
        return await engine.apply(
            rollback,
            Trigger.APPROVE,
            user,
            "Approved: lock taken, starting the rollback",
            notes=notes,
            approved_by=approvers,
            # An approval that overrode a failing preflight is break-glass: the card says so.
            break_glass_reason=reason if rollback.preflight_failures else None,
        )

    async def _still_as_shown(self, rollback: Rollback, user: str) -> None:
        """Refuse the approval when what runs is not what the card showed; plan again."""
        engine = self._engine()
        changed = await changed_since_shown(engine.providers, rollback)
        if changed is None:
            return
        where = f"{rollback.service}/{rollback.environment}"
        try:
            await engine._replan(rollback)
            after = "The card now shows what runs and the new plan: approve again if it still fits."
        except InvalidRequest as exc:
            after = f"The plan could not be made again ({exc.message}): request a new rollback."
        raise await engine.refused(
            rollback.id,
            user,
            "approve",
            ChangedSinceShown(
                f"Not approved: {where} changed since this card was shown: {changed}. {after}"
            ),
        )

    async def _replan(self, rollback: Rollback) -> None:
        """Plan an awaiting rollback again from what runs now (same target, fresh preflight)."""
        engine = self._engine()
        service, env = rollback.service, rollback.environment
        _, versions, current = await engine.running(service, env)
        target = rollback.target_version
        # The target keeps the name it was asked for by; what runs now is named afresh.
        shown = shown_names(versions, {current: None})
        if rollback.shown_target != target:
            shown[target] = rollback.shown_target
        first = await plan_first(
            engine.providers, service, env, current, target, rollback.bad_commit, shown
        )
        later = await plan_later(
            engine.providers, service, env, engine.config.environment(service, env).steps, target
        )
        await engine.rollbacks.update(
            rollback.id,
            current_version=current,
            plan=first.plan,
            warnings=first.warnings,
            steps=[first, *later],
        )

    async def _override_preflight(
        self, rollback: Rollback, user: str, reason: str | None
    ) -> tuple[str, str, str]:
        """Let a failing preflight through only by break-glass naming each failing check."""
        engine = self._engine()
        failing = rollback.preflight_failures
        listed = "; ".join(f"{item.name} ({item.why})" for item in failing)
        if not engine.policy(rollback).break_glass.enabled:
            raise await engine.refused(
                rollback.id,
                user,
                "approve",
                InvalidRequest(
                    f"Preflight failed: {listed}. Break-glass is off for this environment, so "
                    "it cannot be approved: fix the cause and request the rollback again."
                ),
            )
        names = ", ".join(item.name for item in failing)
        if reason is None:
            raise ReasonRequired(
                f"Preflight failed: {listed}. Approving anyway is break-glass: give the reason "
                f"and name each check you override ({names}). It is recorded.",
                purpose=Purpose.PREFLIGHT,
            )
        missing = unnamed_overrides(reason, failing)
        if missing:
            raise ReasonRequired(
                f"Name each failing check you override in the reason; missing: "
                f"{', '.join(missing)}.",
                purpose=Purpose.PREFLIGHT,
            )
        return (
            user,
            "preflight_override",
            f"Preflight overridden by {mention(user)} (break-glass) for {names}: {reason}",
        )

    async def _break_glass(
        self,
        rollback: Rollback,
        user: str,
        reason: str | None,
        notes: list[tuple[str, str, str]],
    ) -> Rollback:
        """Approve one's own rollback, where the policy allows it, with a reason."""
        engine = self._engine()
        await engine.allowed(Trigger.BREAK_GLASS, rollback, user)
        if reason is None:
            raise ReasonRequired(
                "Break-glass: you are approving your own critical rollback. "
                "Give the reason; it is recorded.",
                purpose=Purpose.BREAK_GLASS,
            )
        return await engine.apply(
            rollback,
            Trigger.BREAK_GLASS,
            user,
            "Approved: lock taken, starting the rollback",
            notes=[*notes, (user, "break_glass", f"Break-glass self-approval: {reason}")],
            details={"reason": reason},
            approved_by=[user],
            break_glass_reason=reason,
        )

    async def _check_danger(self, rollback: Rollback, user: str, confirmed: bool) -> None:
        """Refuse a plan that destroys data unless this approval says so explicitly."""
        engine = self._engine()
        what = "; ".join(rollback.danger)
        if not confirmed:
            raise InvalidRequest(
                f"This plan cannot be fully undone: {what}. Approve it with the red "
                "“Approve, data will be deleted” button and confirm."
            )
        if not user.startswith("cli:"):
            await engine.check(
                Who.REQUESTER_OR_APPROVER, rollback, user, "confirm the data loss", "approve"
            )

    async def approve_from_terminal(
        self,
        rollback_id: str,
        operator: str,
        reason: str,
        *,
        danger_confirmed: bool = False,
    ) -> Rollback:
        """Approve from the terminal (break-glass for when Slack is down), recorded as such."""
        engine = self._engine()
        rollback = await engine.get(rollback_id)
        if rollback.danger:
            await engine._check_danger(rollback, operator, danger_confirmed)
        loss = f" (data loss confirmed: {'; '.join(rollback.danger)})" if rollback.danger else ""
        return await engine.apply(
            rollback,
            Trigger.APPROVE_FROM_TERMINAL,
            operator,
            "Approved: lock taken, starting the rollback",
            notes=[(operator, "break_glass", f"Approved from the terminal: {reason}{loss}")],
            details={"reason": reason},
            approved_by=[operator],
            break_glass_reason=reason,
        )

    async def reject(self, rollback_id: str, user: str, reason: str | None = None) -> Rollback:
        """Reject a rollback awaiting approval (approvers only)."""
        engine = self._engine()
        rollback = await engine.get(rollback_id)
        error = f"Rejected by {mention(user)}" + (f": {reason}" if reason else "")
        return await engine.apply(rollback, Trigger.REJECT, user, error, error=error)

    async def cancel(self, rollback_id: str, user: str) -> Rollback:
        """Cancel a rollback that has not started (requester or approver)."""
        engine = self._engine()
        rollback = await engine.get(rollback_id)
        await engine.allowed(Trigger.CANCEL, rollback, user)
        if rollback.state in ACTIVE_STATES:
            raise await engine.refused(
                rollback.id,
                user,
                "cancel",
                Conflict(f"Rollback {rollback.id} is already running; it cannot be cancelled."),
            )
        said = f"Cancelled by {mention(user)}"
        return await engine.apply(rollback, Trigger.CANCEL, user, said, error=said)

    async def retry(self, rollback_id: str, user: str) -> Rollback:
        """Approve a rollback that failed in a step to run again from that step."""
        engine = self._engine()
        rollback = await engine.get(rollback_id)
        await engine.allowed(Trigger.RETRY, rollback, user)
        index = rollback.failed_step
        if rollback.state is not State.FAILED or index is None:
            raise await engine.refused(
                rollback.id,
                user,
                "retry",
                Conflict(
                    f"Rollback {rollback.id} is {rollback.state.label}; only a rollback that "
                    "failed in a step can be retried."
                ),
            )
        again = {StepStatus.FAILED, StepStatus.NOT_RUN}
        steps = [
            s.model_copy(update={"status": StepStatus.PENDING, "result": None})
            if s.status in again
            else s
            for s in rollback.steps
        ]
        name = rollback.steps[index].name if rollback.steps else rollback.service
        return await engine.apply(
            rollback,
            Trigger.RETRY,
            user,
            f"Retry from step {index + 1} ({name}) by {mention(user)}",
            steps=steps,
            failed_step=None,
            error=None,
            target_state=None,
            verification=None,
            verification_table=None,
            finished_at=None,
        )

    async def decide_fix_forward(self, rollback_id: str, user: str) -> Rollback:
        """Record the decision to leave a failed rollback as it is and fix forward."""
        engine = self._engine()
        rollback = await engine.get(rollback_id)
        await engine.check(Who.REQUESTER_OR_APPROVER, rollback, user, "decide this", "fix_forward")
        if rollback.state not in {State.FAILED, State.INTERRUPTED}:
            raise await engine.refused(
                rollback.id,
                user,
                "fix_forward",
                Conflict(f"Rollback {rollback.id} is {rollback.state.label}."),
            )
        if rollback.fix_forward_by:
            raise await engine.refused(
                rollback.id,
                user,
                "fix_forward",
                Conflict(f"{mention(rollback.fix_forward_by)} already decided to fix forward."),
            )
        rollback = await engine.rollbacks.update(rollback.id, fix_forward_by=user)
        await engine.record(
            rollback, user, "fix_forward", f"Decided to fix forward: {mention(user)}"
        )
        return rollback
