"""The rollback engine: the state machine of DESIGN.md, free of Slack types.

Every transition is a compare-and-set in the store, so a double click, a retry or a
second process can never move a rollback twice or run it twice.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import structlog

from bot.config import ApprovalPolicy, People, RollbotConfig
from bot.directory import Directory, NoDirectory
from bot.errors import Conflict, InvalidRequest, NotAllowed, Purpose, ReasonRequired
from bot.matrix import Action
from bot.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    OPEN_STATES,
    AuditEntry,
    Event,
    Rollback,
    State,
    StepStatus,
    utcnow,
)
from bot.names import COMMIT_PATTERN, NAME_PATTERN, VERSION_PATTERN
from bot.planning import describe, plan_first, plan_later, run_step
from bot.pool import ProviderPool
from bot.render import render
from bot.reporting import Guarded, Reporter
from bot.store.base import Store
from bot.text import escape, mention
from bot.verification import CheckResult, all_passed, render_table, run_checks
from providers.base import ProviderError, Version

log = structlog.get_logger(__name__)


NO_CHECKS = "no checks configured"

# What runs an approved rollback once it is "running", up to its outcome.
Runner = Callable[[Rollback, Reporter], Awaitable[Rollback]]


def new_rollback_id() -> str:
    """Return a short, unguessable rollback id."""
    return f"rb-{secrets.token_hex(4)}"


def failure_text(rollback: Rollback) -> str:
    """Render what failed, where each target stands and the guide's options."""
    return render("rollback_failed.md.j2", rb=rollback, restorable=rollback.touched_database)


class Engine:
    """Drives rollbacks from request to verified result."""

    def __init__(
        self,
        config: RollbotConfig,
        store: Store,
        providers: ProviderPool,
        directory: Directory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.providers = providers
        self.directory = directory or NoDirectory()
        self._clock = clock
        self._active: set[asyncio.Task[object]] = set()
        self._running: set[str] = set()

    # -- lookups ---------------------------------------------------------------------

    def resolve(self, service: str, environment: str | None) -> str:
        """Return the environment meant, or raise InvalidRequest naming what exists."""
        if service not in self.config.services:
            known = ", ".join(sorted(self.config.services)) or "none"
            raise InvalidRequest(f"Unknown service '{service}'. Known services: {known}.")
        svc = self.config.services[service]
        env = svc.pick_environment(environment)
        if env is None:
            names = ", ".join(sorted(svc.environments))
            raise InvalidRequest(
                f"Service '{service}' has several environments; add env=ENV ({names})."
            )
        if env not in svc.environments:
            names = ", ".join(sorted(svc.environments))
            raise InvalidRequest(
                f"Service '{service}' has no environment '{env}'. Environments: {names}."
            )
        return env

    async def versions(self, service: str, environment: str | None) -> tuple[str, list[Version]]:
        """Return the environment and the versions a service can roll back to."""
        env = self.resolve(service, environment)
        provider = self.providers.get(service, env)
        try:
            return env, await provider.list_versions()
        except ProviderError as exc:
            raise InvalidRequest(
                f"Could not read versions of {service}/{env}: {exc.message}"
            ) from exc

    async def running(
        self, service: str, environment: str | None
    ) -> tuple[str, list[Version], str]:
        """Return the environment, its versions and the one running now."""
        env, versions = await self.versions(service, environment)
        current = next((v.name for v in versions if v.current), None)
        if current is None:
            raise InvalidRequest(f"Could not tell which version of {service}/{env} is running.")
        return env, versions, current

    async def is_member(self, people: People, user: str) -> bool:
        """Return True when the user is listed, directly or through a group."""
        if user in people.users:
            return True
        for group in people.groups:
            if user in await self.directory.members(group):
                return True
        return False

    def policy(self, rollback: Rollback) -> ApprovalPolicy:
        """Return the approval policy that governs a rollback."""
        return self.config.policy_for(rollback.service, rollback.environment)

    async def get(self, rollback_id: str) -> Rollback:
        """Return a rollback or raise InvalidRequest."""
        rollback = await self.store.get(rollback_id)
        if rollback is None:
            raise InvalidRequest(f"No rollback {rollback_id}.")
        return rollback

    # -- recording -------------------------------------------------------------------

    async def record(
        self, rollback: Rollback, actor: str, kind: str, text: str, **details: str
    ) -> None:
        """Add a timeline line and an audit record."""
        await self.store.add_event(
            Event(rollback_id=rollback.id, actor=actor, kind=kind, text=text)
        )
        await self.store.audit(
            AuditEntry(actor=actor, action=kind, rollback_id=rollback.id, details=details)
        )
        log.info(
            kind,
            rollback_id=rollback.id,
            service=rollback.service,
            environment=rollback.environment,
            user=actor,
            text=text,
        )

    async def _move(
        self, rollback: Rollback, expected: Sequence[State], new: State, **fields: object
    ) -> Rollback:
        moved = await self.store.transition(rollback.id, expected, new, **fields)
        if moved is None:
            current = await self.get(rollback.id)
            raise Conflict(f"Rollback {rollback.id} is already {current.state.label}.")
        return moved

    # -- the flow --------------------------------------------------------------------

    async def request(
        self,
        *,
        service: str,
        version: str | None,
        environment: str | None,
        user: str,
        dry_run: bool = False,
        channel_id: str | None = None,
        from_terminal: bool = False,
        bad_commit: str | None = None,
        detected_at: datetime | None = None,
    ) -> Rollback:
        """Create a rollback after checking the policy, the locks and the target version.

        A terminal operator is trusted as a requester: shell access to the bot's host is
        the stronger credential, and the terminal is the path for when Slack is down.
        """
        # The Slack parser checks these already; the terminal and any future caller
        # go through the same gate before anything reaches a provider.
        for what, value, pattern in (
            ("service", service, NAME_PATTERN),
            ("environment", environment, NAME_PATTERN),
            ("version", version, VERSION_PATTERN),
            ("commit", bad_commit, COMMIT_PATTERN),
        ):
            if value is not None and not pattern.fullmatch(value):
                raise InvalidRequest(f"{value[:40]!r} is not a valid {what}.")
        env = self.resolve(service, environment)
        policy = self.config.policy_for(service, env)
        allowed = from_terminal or policy.requesters.anyone
        if not allowed and not await self.is_member(policy.requesters, user):
            raise NotAllowed(f"You are not allowed to request rollbacks of {service}/{env}.")
        if not dry_run:
            await self.refuse_if_busy(service, env)
        env, versions, current = await self.running(service, env)
        if bad_commit is None:
            target = self._pick_target(service, env, version, current, versions)
        elif version is not None:
            raise InvalidRequest("Name either a version or a commit to revert, not both.")
        else:
            target = f"revert {bad_commit}"
        first = await plan_first(self.providers, service, env, current, target, bad_commit)
        later = await plan_later(
            self.providers, service, env, self.config.environment(service, env).steps, target
        )
        rollback = Rollback(
            id=new_rollback_id(),
            service=service,
            environment=env,
            requested_by=user,
            current_version=current,
            target_version=target,
            dry_run=dry_run,
            plan=first.plan,
            warnings=first.warnings,
            steps=[first, *later],
            bad_commit=bad_commit,
            channel_id=channel_id,
            detected_at=detected_at,
        )
        await self.store.create(rollback)
        what = "Dry run requested" if dry_run else "Rollback requested"
        await self.record(
            rollback,
            user,
            "requested",
            f"{what}: {service}/{env} {current} → {target}",
            current=current,
            target=target,
            dry_run=str(dry_run),
        )
        return rollback

    async def refuse_if_busy(self, service: str, env: str) -> None:
        """Raise Conflict naming the holder when a service environment is taken."""
        found = await self.store.find(
            states=OPEN_STATES | ACTIVE_STATES, service=service, environment=env
        )
        busy = [rb for rb in found if not rb.dry_run]
        if busy:
            other = busy[0]
            advice = (
                f"Wait for it, or cancel it with `/rollback cancel {other.id}`."
                if other.state in OPEN_STATES - {State.APPROVED}
                else "It is running; wait for its result in its thread."
            )
            raise Conflict(
                f"{service}/{env} already has rollback {other.id} by "
                f"{mention(other.requested_by)} ({other.state.label}). {advice}"
            )
        for lock in await self.store.locks():
            if lock.key == f"{service}/{env}":
                raise Conflict(
                    f"{service}/{env} is locked by rollback {lock.rollback_id} of "
                    f"{mention(lock.holder)} until {lock.expires_at:%H:%M} UTC."
                )

    @staticmethod
    def _pick_target(
        service: str, env: str, version: str | None, current: str, versions: list[Version]
    ) -> str:
        names = [v.name for v in versions]
        shown = ", ".join(names[:10]) or "none"
        if version is None:
            stable = next((v.name for v in versions if v.previous_stable), None)
            if stable is None:
                raise InvalidRequest(
                    f"{service}/{env} runs {current} and has no earlier version to roll back to."
                )
            return stable
        # Providers may accept other names for a version (a commit sha, a bare 1.2.3);
        # the card always shows the canonical one.
        found = next((v for v in versions if v.answers_to(version)), None)
        if found is None:
            raise InvalidRequest(
                f"Version {version} of {service}/{env} is not available. Available: {shown}."
            )
        if found.name == current:
            raise InvalidRequest(f"{service}/{env} already runs {version}.")
        return found.name

    async def confirm_severity(
        self, rollback_id: str, issue: str, user: str, override_reason: str | None = None
    ) -> Rollback:
        """Record the issue type; move on to approval, or stop a dry run."""
        rollback = await self.get(rollback_id)
        row = self.config.decision_matrix.get(issue)
        if row is None:
            raise InvalidRequest(f"Unknown issue type {issue!r}.")
        if user != rollback.requested_by and not await self._may_approve(rollback, user):
            raise NotAllowed("Only the requester or an approver can confirm the severity.")
        reason = (override_reason or "").strip() or None
        if row.action is Action.FIX_FORWARD and reason is None and not rollback.dry_run:
            raise ReasonRequired(
                f"The decision matrix says “{row.action.value}” for {row.label.lower()}. "
                "Give a reason to roll back anyway.",
                purpose=Purpose.OVERRIDE,
            )
        rollback = await self._move(
            rollback,
            [State.REQUESTED],
            State.SEVERITY_CONFIRMED,
            issue=issue,
            severity=row.severity.value,
            action=row.action.value,
            override_reason=reason,
        )
        await self.record(
            rollback,
            user,
            "severity",
            f"Severity confirmed: {row.severity.value} ({row.label}) → {row.action.value}",
            issue=issue,
            severity=row.severity.value,
        )
        if reason:
            await self.record(
                rollback, user, "override", f"Fix-forward overridden: {reason}", reason=reason
            )
        if rollback.dry_run:
            rollback = await self._move(
                rollback,
                [State.SEVERITY_CONFIRMED],
                State.CANCELLED,
                error="Dry run: stopped before approval; nothing was changed.",
            )
            await self.record(rollback, user, "dry_run", "Dry run complete: nothing was changed.")
            return rollback
        rollback = await self._move(rollback, [State.SEVERITY_CONFIRMED], State.AWAITING_APPROVAL)
        # A plan that deletes data waits for someone to confirm that, whatever the policy.
        if self.policy(rollback).required_approvals == 0 and not rollback.danger:
            return await self._approve_now(rollback, [], "policy")
        return rollback

    async def _may_approve(self, rollback: Rollback, user: str) -> bool:
        approvers = self.policy(rollback).approvers
        return approvers.anyone or await self.is_member(approvers, user)

    async def approve(
        self,
        rollback_id: str,
        user: str,
        break_glass_reason: str | None = None,
        *,
        danger_confirmed: bool = False,
    ) -> Rollback:
        """Record an approval; when enough have come, take the lock and mark it approved."""
        rollback = await self.get(rollback_id)
        if rollback.state is not State.AWAITING_APPROVAL:
            by = ", ".join(mention(u) for u in rollback.approved_by)
            tail = f" by {by}" if by and rollback.state is not State.CANCELLED else ""
            raise Conflict(f"Rollback {rollback.id} is already {rollback.state.label}{tail}.")
        reason = (break_glass_reason or "").strip() or None
        if not rollback.danger:
            return await self._approve_as(rollback, user, reason)
        await self._check_danger(rollback, user, danger_confirmed)
        approved = await self._approve_as(rollback, user, reason)
        # Recorded once the approval counts: a refused click confirmed nothing.
        what = "; ".join(rollback.danger)
        await self.record(
            rollback, user, "danger_confirmed", f"Confirmed by {mention(user)}: {what}"
        )
        return approved

    async def _approve_as(self, rollback: Rollback, user: str, reason: str | None) -> Rollback:
        policy = self.policy(rollback)
        if rollback.danger and policy.required_approvals == 0:
            return await self._approve_now(rollback, [], user)
        if user == rollback.requested_by:
            self._check_break_glass(rollback, policy)
            if not await self._may_approve(rollback, user):
                raise NotAllowed(
                    "Break-glass self-approval is only for approvers; ask one to approve."
                )
            if reason is None:
                raise ReasonRequired(
                    "Break-glass: you are approving your own critical rollback. "
                    "Give the reason; it is recorded.",
                    purpose=Purpose.BREAK_GLASS,
                )
            await self.record(
                rollback, user, "break_glass", f"Break-glass self-approval: {reason}", reason=reason
            )
            return await self._approve_now(rollback, [user], user, break_glass_reason=reason)
        if not await self._may_approve(rollback, user):
            raise NotAllowed(
                f"You are not an approver for {rollback.service}/{rollback.environment}."
            )
        approvers = await self.store.add_approval(rollback.id, user)
        await self.record(rollback, user, "approval", f"Approved by {mention(user)}")
        if len(approvers) < policy.required_approvals:
            return await self.store.update(rollback.id, approved_by=approvers)
        return await self._approve_now(rollback, approvers, user)

    async def _check_danger(self, rollback: Rollback, user: str, confirmed: bool) -> None:
        """Refuse a plan that destroys data unless this approval says so explicitly."""
        what = "; ".join(rollback.danger)
        if not confirmed:
            raise InvalidRequest(
                f"This plan cannot be fully undone: {what}. Approve it with the red "
                "“Approve, data will be deleted” button and confirm."
            )
        allowed = user == rollback.requested_by or await self._may_approve(rollback, user)
        if not allowed:
            raise NotAllowed(
                f"You are not an approver for {rollback.service}/{rollback.environment}."
            )

    async def approve_from_terminal(
        self, rollback_id: str, operator: str, reason: str, *, danger_confirmed: bool = False
    ) -> Rollback:
        """Approve from the terminal (break-glass for when Slack is down), recorded as such."""
        rollback = await self.get(rollback_id)
        if rollback.danger:
            await self._check_danger(rollback, operator, danger_confirmed)
        await self.record(
            rollback,
            operator,
            "break_glass",
            f"Approved from the terminal: {reason}"
            + (f" (data loss confirmed: {'; '.join(rollback.danger)})" if rollback.danger else ""),
            reason=reason,
        )
        return await self._approve_now(rollback, [operator], operator, break_glass_reason=reason)

    @staticmethod
    def _check_break_glass(rollback: Rollback, policy: ApprovalPolicy) -> None:
        allowed = policy.break_glass.enabled and rollback.severity in {
            s.value for s in policy.break_glass.severities
        }
        if not allowed:
            severities = ", ".join(s.value for s in policy.break_glass.severities)
            when = f"only for {severities} severity" if policy.break_glass.enabled else "never"
            raise NotAllowed(
                "You requested this rollback, so someone else must approve it "
                f"(self-approval is allowed {when})."
            )

    async def _approve_now(
        self, rollback: Rollback, approvers: list[str], actor: str, **fields: object
    ) -> Rollback:
        ttl = timedelta(seconds=self.config.runtime.lock_ttl_seconds)
        lock = await self.store.acquire_lock(
            rollback.lock_key, rollback.requested_by, rollback.id, ttl
        )
        if lock.rollback_id != rollback.id:
            raise Conflict(
                f"{rollback.lock_key} is locked by rollback {lock.rollback_id} of "
                f"{mention(lock.holder)}; this one stays awaiting approval."
            )
        moved = await self.store.transition(
            rollback.id, [State.AWAITING_APPROVAL], State.APPROVED, approved_by=approvers, **fields
        )
        if moved is None:
            current = await self.get(rollback.id)
            if current.state not in ACTIVE_STATES | {State.APPROVED}:
                await self.store.release_lock(rollback.lock_key, rollback.id)
            by = ", ".join(mention(u) for u in current.approved_by)
            tail = f" by {by}" if by and current.state not in FINAL_STATES else ""
            raise Conflict(f"Rollback {rollback.id} is already {current.state.label}{tail}.")
        await self.record(moved, actor, "approved", "Approved: lock taken, starting the rollback")
        return moved

    async def reject(self, rollback_id: str, user: str, reason: str | None = None) -> Rollback:
        """Reject a rollback awaiting approval (approvers only)."""
        rollback = await self.get(rollback_id)
        if user == rollback.requested_by or not await self._may_approve(rollback, user):
            raise NotAllowed("Only an approver other than the requester can reject.")
        rollback = await self._move(
            rollback,
            [State.REQUESTED, State.SEVERITY_CONFIRMED, State.AWAITING_APPROVAL],
            State.REJECTED,
            error=f"Rejected by {mention(user)}" + (f": {reason}" if reason else ""),
        )
        await self.record(rollback, user, "rejected", rollback.error or "Rejected")
        return rollback

    async def cancel(self, rollback_id: str, user: str) -> Rollback:
        """Cancel a rollback that has not started (requester or approver)."""
        rollback = await self.get(rollback_id)
        if user != rollback.requested_by and not await self._may_approve(rollback, user):
            raise NotAllowed("Only the requester or an approver can cancel this rollback.")
        if rollback.state in ACTIVE_STATES:
            raise Conflict(f"Rollback {rollback.id} is already running; it cannot be cancelled.")
        rollback = await self._move(
            rollback, list(OPEN_STATES), State.CANCELLED, error=f"Cancelled by {mention(user)}"
        )
        await self.store.release_lock(rollback.lock_key, rollback.id)
        await self.record(rollback, user, "cancelled", f"Cancelled by {mention(user)}")
        return rollback

    async def retry(self, rollback_id: str, user: str) -> Rollback:
        """Approve a rollback that failed in a step to run again from that step."""
        rollback = await self.get(rollback_id)
        if user != rollback.requested_by and not await self._may_approve(rollback, user):
            raise NotAllowed("Only the requester or an approver can retry this rollback.")
        index = rollback.failed_step
        if rollback.state is not State.FAILED or index is None:
            raise Conflict(
                f"Rollback {rollback.id} is {rollback.state.label}; only a rollback that failed "
                "in a step can be retried."
            )
        await self.refuse_if_busy(rollback.service, rollback.environment)
        ttl = timedelta(seconds=self.config.runtime.lock_ttl_seconds)
        lock = await self.store.acquire_lock(rollback.lock_key, user, rollback.id, ttl)
        if lock.rollback_id != rollback.id:
            raise Conflict(f"{rollback.lock_key} is locked by rollback {lock.rollback_id}.")
        again = {StepStatus.FAILED, StepStatus.NOT_RUN}
        steps = [
            s.model_copy(update={"status": StepStatus.PENDING, "result": None})
            if s.status in again
            else s
            for s in rollback.steps
        ]
        moved = await self.store.transition(
            rollback.id,
            [State.FAILED],
            State.APPROVED,
            steps=steps,
            failed_step=None,
            error=None,
            target_state=None,
            verification=None,
            verification_table=None,
            finished_at=None,
        )
        if moved is None:
            await self.store.release_lock(rollback.lock_key, rollback.id)
            current = await self.get(rollback.id)
            raise Conflict(f"Rollback {rollback.id} is already {current.state.label}.")
        name = rollback.steps[index].name if rollback.steps else rollback.service
        await self.record(
            moved, user, "retry", f"Retry from step {index + 1} ({name}) by {mention(user)}"
        )
        return moved

    async def decide_fix_forward(self, rollback_id: str, user: str) -> Rollback:
        """Record the decision to leave a failed rollback as it is and fix forward."""
        rollback = await self.get(rollback_id)
        if user != rollback.requested_by and not await self._may_approve(rollback, user):
            raise NotAllowed("Only the requester or an approver can decide this.")
        if rollback.state not in {State.FAILED, State.INTERRUPTED}:
            raise Conflict(f"Rollback {rollback.id} is {rollback.state.label}.")
        if rollback.fix_forward_by:
            raise Conflict(f"{mention(rollback.fix_forward_by)} already decided to fix forward.")
        rollback = await self.store.update(rollback.id, fix_forward_by=user)
        await self.record(rollback, user, "fix_forward", f"Decided to fix forward: {mention(user)}")
        return rollback

    async def execute(
        self, rollback_id: str, reporter: Reporter, run: Runner | None = None
    ) -> Rollback | None:
        """Run an approved rollback and verify it; None when it does not run here.

        `run` replaces what runs between "running" and the outcome (a drill runs two legs);
        the checks, the lock, the shutdown and the crash handling around it stay the same.
        """
        guarded = Guarded(reporter)
        approved = await self.store.get(rollback_id)
        if approved is None or approved.state is not State.APPROVED:
            if approved and approved.state in FINAL_STATES:
                # Cancelled or swept between approval and now: free the service.
                await self.store.release_lock(approved.lock_key, approved.id)
            return None
        if await self._stale(approved, guarded):
            return None
        rollback = await self.store.transition(rollback_id, [State.APPROVED], State.RUNNING)
        if rollback is None:
            return None
        task = asyncio.current_task()
        if task:
            self._active.add(task)
        self._running.add(rollback.id)
        started = self._clock()
        try:
            with structlog.contextvars.bound_contextvars(
                rollback_id=rollback.id,
                service=rollback.service,
                environment=rollback.environment,
            ):
                log.info("rollback started", user=rollback.requested_by)
                rollback = await (run or self._run)(rollback, guarded)
        except BaseException:
            # Whatever escaped (a bug, a shutdown) must not leave the rollback
            # "running" forever nor the service locked, nor the thread silent.
            await asyncio.shield(self._interrupted(rollback, guarded))
            raise
        finally:
            await self.store.release_lock(rollback.lock_key, rollback.id)
            self._running.discard(rollback.id)
            if task:
                self._active.discard(task)
        log.info(
            "rollback finished",
            rollback_id=rollback.id,
            state=rollback.state.value,
            duration_s=round(self._clock() - started, 2),
        )
        return rollback

    async def _stale(self, rollback: Rollback, reporter: Reporter) -> bool:
        """Cancel an approved rollback whose service was redeployed since the request."""
        first_done = bool(rollback.steps) and rollback.steps[0].status is StepStatus.DONE
        if first_done and rollback.bad_commit:
            return False  # a reverted commit leaves no version name to compare with
        expected = rollback.target_version if first_done else rollback.current_version
        provider = self.providers.get(rollback.service, rollback.environment)
        try:
            running = await provider.current_version()
        except ProviderError:
            return False  # the rollback itself will meet and report the same problem
        if running == expected:
            return False
        why = (
            f"{rollback.service}/{rollback.environment} now runs {running}, not "
            f"{expected} as when this was "
            + ("retried" if first_done else "requested")
            + ". Nothing was changed; request the rollback again if it is still needed."
        )
        moved = await self.store.transition(
            rollback.id,
            [State.APPROVED],
            State.CANCELLED,
            error=why,
            target_state=f"unchanged: runs {running}",
        )
        await self.store.release_lock(rollback.lock_key, rollback.id)
        if moved:
            await self.record(moved, "rollbot", "cancelled", why)
            await reporter.finished(moved, f":information_source: {escape(why)}")
        return True

    async def _interrupted(self, rollback: Rollback, reporter: Reporter) -> None:
        moved = await self.store.transition(
            rollback.id,
            list(ACTIVE_STATES),
            State.INTERRUPTED,
            error="rollbot stopped in the middle of this rollback.",
            target_state=await self.state_now(await self.get(rollback.id)),
        )
        await self.store.release_lock(rollback.lock_key, rollback.id)
        if moved:
            await self.record(moved, "rollbot", "interrupted", moved.error or "")
            await reporter.finished(moved, failure_text(moved))

    async def drain(self, wait_seconds: float, cancel_seconds: float) -> None:
        """Wait for running rollbacks to end; then cancel them and let them clean up."""
        if not self._active:
            return
        log.info("waiting for running rollbacks", count=len(self._active))
        _, pending = await asyncio.wait(set(self._active), timeout=wait_seconds)
        for task in pending:
            task.cancel()
        if pending:
            # Cancelled rollbacks put the old containers back and record themselves
            # as interrupted; they get a short, separate budget for that.
            await asyncio.wait(pending, timeout=cancel_seconds)

    async def _run(self, rollback: Rollback, reporter: Reporter) -> Rollback:
        steps = f" in {len(rollback.steps)} steps" if rollback.multi_step else ""
        await self.record(
            rollback,
            "rollbot",
            "started",
            f"Rolling back {rollback.service}/{rollback.environment} to "
            f"{rollback.target_version}{steps}",
        )
        for index, step in enumerate(rollback.steps):
            if step.status in {StepStatus.DONE, StepStatus.SKIPPED}:
                continue
            failed = await self._run_step(rollback, reporter, index)
            if failed is not None:
                return failed
            await self._refresh_lock(rollback)
        rollback = await self._verified(rollback, reporter)
        if rollback.state is not State.VERIFYING:
            return rollback
        checked = rollback.verification != NO_CHECKS
        rollback = await self._move(rollback, [State.VERIFYING], State.SUCCEEDED)
        await self.store.release_lock(rollback.lock_key, rollback.id)
        await self.record(
            rollback,
            "rollbot",
            "succeeded",
            f"Rolled back to {rollback.target_version}; "
            + ("verification passed" if checked else "no checks configured"),
        )
        await reporter.finished(rollback, self.notification(rollback, verified=checked))
        return rollback

    async def _verified(self, rollback: Rollback, reporter: Reporter) -> Rollback:
        """Verify a rollback whose steps ran: VERIFYING when the checks pass, else FAILED."""
        rollback = await self._move(rollback, [State.RUNNING], State.VERIFYING)
        results = await self.verify(rollback)
        rollback = await self.store.update(
            rollback.id,
            verification=(
                f"{sum(r.ok for r in results)}/{len(results)} checks passed"
                if results
                else NO_CHECKS
            ),
            verification_table=render_table(results) if results else None,
        )
        if results:
            await reporter.verified(rollback, results)
        else:
            await self._progress(
                rollback,
                reporter,
                "No verification checks are configured here: health was NOT checked.",
            )
        if not all_passed(results):
            failed_checks = ", ".join(r.name for r in results if not r.ok)
            return await self._fail(
                rollback,
                reporter,
                f"Verification failed: {failed_checks}.",
                await self.state_now(rollback),
            )
        return rollback

    async def _progress(self, rollback: Rollback, reporter: Reporter, text: str) -> None:
        await self.record(rollback, "rollbot", "step", text)
        await reporter.progress(rollback, text)

    async def _run_step(
        self, rollback: Rollback, reporter: Reporter, index: int
    ) -> Rollback | None:
        """Run one step; on failure mark it and the later ones, and fail the rollback."""
        step = rollback.steps[index]
        target = self.providers.step(rollback.service, rollback.environment, index)
        count = len(rollback.steps)
        prefix = f"Step {index + 1}/{count} ({step.name}): " if rollback.multi_step else ""

        said: set[str] = set()

        async def progress(text: str) -> None:
            said.add(text)
            await self._progress(rollback, reporter, prefix + text)

        await self._set_step(rollback.id, index, status=StepStatus.RUNNING)
        if rollback.multi_step:
            await self._progress(rollback, reporter, f"Step {index + 1}/{count}: {step.heading}")
        timeout = self.config.runtime.rollback_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                commit = rollback.bad_commit if index == 0 else None
                outcome = await run_step(target, step, commit, progress)
        except (ProviderError, TimeoutError) as exc:
            message = (
                exc.message
                if isinstance(exc, ProviderError)
                else f"The rollback did not finish within {timeout:g} s."
            )
            state = getattr(exc, "target_state", None) or await describe(target)
            await self._set_step(rollback.id, index, status=StepStatus.FAILED, result=message)
            for later in range(index + 1, count):
                await self._set_step(rollback.id, later, status=StepStatus.NOT_RUN)
            if rollback.multi_step:
                message = f"Step {index + 1} of {count} ({step.name}) failed: {message}"
                state = await self.state_now(await self.get(rollback.id), {index: state})
            return await self._fail(rollback, reporter, message, state, failed_step=index)
        for note in [outcome.summary, *outcome.notes]:
            if note not in said:  # providers often report their last line as the summary too
                await progress(note)
        await self._set_step(rollback.id, index, status=StepStatus.DONE, result=outcome.summary)
        return None

    async def _set_step(self, rollback_id: str, index: int, **fields: object) -> Rollback:
        rollback = await self.get(rollback_id)
        steps = list(rollback.steps)
        steps[index] = steps[index].model_copy(update=fields)
        return await self.store.update(rollback_id, steps=steps)

    async def state_now(self, rollback: Rollback, known: dict[int, str] | None = None) -> str:
        """Say what each step's target holds now, asked from it (`known`: already asked)."""
        known = known or {}
        lines = []
        for index, step in enumerate(rollback.steps or [None]):
            state = known.get(index) or await describe(
                self.providers.step(rollback.service, rollback.environment, index)
            )
            if step is None or not rollback.multi_step:
                return state
            lines.append(f"{index + 1}. {step.name} ({step.status.value}): {state}")
        return "\n".join(lines)

    async def _refresh_lock(self, rollback: Rollback) -> None:
        # Each phase may take the whole of its own budget: restart the TTL.
        ttl = timedelta(seconds=self.config.runtime.lock_ttl_seconds)
        await self.store.acquire_lock(rollback.lock_key, rollback.requested_by, rollback.id, ttl)

    async def verify(self, rollback: Rollback) -> list[CheckResult]:
        """Run the environment's checks and record the outcome."""
        checks = self.config.environment(rollback.service, rollback.environment).checks
        runtime = self.config.runtime
        results = await run_checks(
            checks,
            deadline_seconds=runtime.verify_deadline_seconds,
            interval_seconds=runtime.verify_interval_seconds,
        )
        passed = sum(r.ok for r in results)
        await self.record(
            rollback,
            "rollbot",
            "verification",
            f"Verification: {passed}/{len(results)} checks passed",
        )
        return results

    async def _fail(
        self,
        rollback: Rollback,
        reporter: Reporter,
        message: str,
        target_state: str,
        failed_step: int | None = None,
    ) -> Rollback:
        rollback = await self._move(
            rollback,
            list(ACTIVE_STATES),
            State.FAILED,
            error=message,
            target_state=target_state,
            failed_step=failed_step,
        )
        # Free the service before saying so: whoever reads "retry" can retry at once.
        await self.store.release_lock(rollback.lock_key, rollback.id)
        await self.record(rollback, "rollbot", "failed", f"Rollback failed: {message}")
        await reporter.finished(rollback, failure_text(rollback))
        return rollback

    def notification(self, rollback: Rollback, *, verified: bool = True) -> str:
        """Render the guide's internal notification for a finished rollback."""
        finished = rollback.finished_at or utcnow()
        row = self.config.decision_matrix.get(rollback.issue or "")
        impact = f"{row.severity.value} severity: {row.label}" if row else "not assessed"
        return render(
            "internal_notification.md.j2",
            rb=rollback,
            date=finished.strftime("%Y-%m-%d"),
            impact=impact,
            status=(
                "All systems operational."
                if verified
                else "Rolled back; no health checks are configured, so verify by hand."
            ),
            minutes=max(1, round((finished - rollback.created_at).total_seconds() / 60)),
        )

    async def sweep(self, *, starting: bool = False) -> list[Rollback]:
        """Expire stale requests and mark rollbacks orphaned by a crash as interrupted.

        `starting`: this process has just started, so nothing in flight is its own and
        every unfinished rollback was orphaned by the previous run (one bot per store).
        Returns the rollbacks it moved, so their cards and threads can say so.
        """
        moved: list[Rollback] = []
        now = utcnow()
        for rollback in await self.store.find(states=OPEN_STATES - {State.APPROVED}, limit=500):
            limit = timedelta(minutes=self.policy(rollback).expires_after_minutes)
            if now - rollback.created_at > limit:
                moved += await self._abandon(
                    rollback, State.EXPIRED, "Expired without approval; nothing was changed."
                )
        # Rollbacks first, then locks: a rollback approved in between has its lock by
        # the time the locks are read, so it is never mistaken for an orphan.
        in_flight = await self.store.find(states=ACTIVE_STATES | {State.APPROVED}, limit=500)
        held = {lock.rollback_id for lock in await self.store.locks()}
        for rollback in in_flight:
            if rollback.id in self._running:
                continue
            if starting or rollback.id not in held:
                state = await self.state_now(rollback)
                moved += await self._abandon(
                    rollback,
                    State.INTERRUPTED,
                    "Interrupted: rollbot stopped while this rollback was in flight.",
                    target_state=state,
                )
                await self.store.release_lock(rollback.lock_key, rollback.id)
        return moved

    async def _abandon(
        self, rollback: Rollback, state: State, why: str, target_state: str | None = None
    ) -> list[Rollback]:
        moved = await self.store.transition(
            rollback.id, [rollback.state], state, error=why, target_state=target_state
        )
        if moved is None:
            return []
        await self.record(moved, "rollbot", state.value, why)
        return [moved]

    # -- drills: bot/drill.py runs a rollback there and back with these -----------------

    async def run_leg(self, rollback: Rollback, reporter: Reporter) -> Rollback:
        """Run step 1 of a running rollback to its target, then verify; the lock stays held.

        Returns the rollback verifying (its checks passed) or failed, as a rollback's own
        run leaves it, so a drill can go on to its next leg or stop where it failed.
        """
        await self._refresh_lock(rollback)
        failed = await self._run_step(rollback, reporter, 0)
        if failed is not None:
            return failed
        await self._refresh_lock(rollback)
        return await self._verified(await self.get(rollback.id), reporter)
