"""The rollback engine: the state machine of DESIGN.md, free of Slack types.

Every transition is a compare-and-set in the store, so a double click, a retry or a
second process can never move a rollback twice or run it twice.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

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
    utcnow,
)
from bot.names import NAME_PATTERN, VERSION_PATTERN
from bot.pool import ProviderPool
from bot.render import render
from bot.reporting import Guarded, Reporter
from bot.store.base import Store
from bot.text import mention
from bot.verification import CheckResult, all_passed, run_checks
from providers.base import Provider, ProviderError, Version

log = structlog.get_logger(__name__)


def new_rollback_id() -> str:
    """Return a short, unguessable rollback id."""
    return f"rb-{secrets.token_hex(4)}"


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
        env, versions = await self.versions(service, env)
        current = next((v.name for v in versions if v.current), None)
        if current is None:
            raise InvalidRequest(f"Could not tell which version of {service}/{env} is running.")
        target = self._pick_target(service, env, version, current, versions)
        provider = self.providers.get(service, env)
        try:
            plan = await provider.plan(target)
        except ProviderError as exc:
            raise InvalidRequest(
                f"Cannot plan the rollback of {service}/{env}: {exc.message}"
            ) from exc
        rollback = Rollback(
            id=new_rollback_id(),
            service=service,
            environment=env,
            requested_by=user,
            current_version=current,
            target_version=target,
            dry_run=dry_run,
            plan=plan.steps,
            warnings=plan.warnings,
            channel_id=channel_id,
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
        if self.policy(rollback).required_approvals == 0:
            return await self._approve_now(rollback, [], "policy")
        return rollback

    async def _may_approve(self, rollback: Rollback, user: str) -> bool:
        approvers = self.policy(rollback).approvers
        return approvers.anyone or await self.is_member(approvers, user)

    async def approve(
        self, rollback_id: str, user: str, break_glass_reason: str | None = None
    ) -> Rollback:
        """Record an approval; when enough have come, take the lock and mark it approved."""
        rollback = await self.get(rollback_id)
        if rollback.state is not State.AWAITING_APPROVAL:
            by = ", ".join(mention(u) for u in rollback.approved_by)
            tail = f" by {by}" if by and rollback.state is not State.CANCELLED else ""
            raise Conflict(f"Rollback {rollback.id} is already {rollback.state.label}{tail}.")
        policy = self.policy(rollback)
        reason = (break_glass_reason or "").strip() or None
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

    async def approve_from_terminal(self, rollback_id: str, operator: str, reason: str) -> Rollback:
        """Approve from the terminal (break-glass for when Slack is down), recorded as such."""
        rollback = await self.get(rollback_id)
        await self.record(
            rollback,
            operator,
            "break_glass",
            f"Approved from the terminal: {reason}",
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

    async def execute(self, rollback_id: str, reporter: Reporter) -> Rollback | None:
        """Run an approved rollback and verify it; None when it does not run here."""
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
                rollback = await self._run(rollback, guarded)
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
        provider = self.providers.get(rollback.service, rollback.environment)
        try:
            running = await provider.current_version()
        except ProviderError:
            return False  # the rollback itself will meet and report the same problem
        if running == rollback.current_version:
            return False
        why = (
            f"{rollback.service}/{rollback.environment} now runs {running}, not "
            f"{rollback.current_version} as when this was requested. Nothing was changed; "
            "request the rollback again if it is still needed."
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
            await reporter.finished(moved, f":information_source: {why}")
        return True

    async def _interrupted(self, rollback: Rollback, reporter: Reporter) -> None:
        provider = self.providers.get(rollback.service, rollback.environment)
        moved = await self.store.transition(
            rollback.id,
            list(ACTIVE_STATES),
            State.INTERRUPTED,
            error="rollbot stopped in the middle of this rollback.",
            target_state=await self._describe(provider),
        )
        await self.store.release_lock(rollback.lock_key, rollback.id)
        if moved:
            await self.record(moved, "rollbot", "interrupted", moved.error or "")
            await reporter.finished(moved, render("rollback_failed.md.j2", rb=moved))

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
        provider = self.providers.get(rollback.service, rollback.environment)

        async def progress(text: str) -> None:
            await self.record(rollback, "rollbot", "step", text)
            await reporter.progress(rollback, text)

        await self.record(
            rollback,
            "rollbot",
            "started",
            f"Rolling back {rollback.service}/{rollback.environment} to {rollback.target_version}",
        )
        try:
            async with asyncio.timeout(self.config.runtime.rollback_timeout_seconds):
                outcome = await provider.rollback(rollback.target_version, progress)
        except (ProviderError, TimeoutError) as exc:
            message = (
                exc.message
                if isinstance(exc, ProviderError)
                else (
                    f"The rollback did not finish within "
                    f"{self.config.runtime.rollback_timeout_seconds:g} s."
                )
            )
            state = getattr(exc, "target_state", None) or await self._describe(provider)
            return await self._fail(rollback, reporter, message, state)
        for note in [outcome.summary, *outcome.notes]:
            await progress(note)
        rollback = await self._move(rollback, [State.RUNNING], State.VERIFYING)
        await self._refresh_lock(rollback)
        results = await self.verify(rollback)
        rollback = await self.store.update(
            rollback.id,
            verification=(
                f"{sum(r.ok for r in results)}/{len(results)} checks passed"
                if results
                else "no checks configured"
            ),
        )
        if results:
            await reporter.verified(rollback, results)
        else:
            await progress("No verification checks are configured here: health was NOT checked.")
        if not all_passed(results):
            failed = ", ".join(r.name for r in results if not r.ok)
            state = await self._describe(provider)
            return await self._fail(rollback, reporter, f"Verification failed: {failed}.", state)
        rollback = await self._move(rollback, [State.VERIFYING], State.SUCCEEDED)
        await self.store.release_lock(rollback.lock_key, rollback.id)
        await self.record(
            rollback,
            "rollbot",
            "succeeded",
            f"Rolled back to {rollback.target_version}; "
            + ("verification passed" if results else "no checks configured"),
        )
        await reporter.finished(rollback, self.notification(rollback, verified=bool(results)))
        return rollback

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

    @staticmethod
    async def _describe(provider: Provider) -> str:
        try:
            return await provider.describe_state()
        except ProviderError as exc:
            return f"unknown: the provider could not be asked ({exc.message})"

    async def _fail(
        self, rollback: Rollback, reporter: Reporter, message: str, target_state: str
    ) -> Rollback:
        rollback = await self._move(
            rollback, list(ACTIVE_STATES), State.FAILED, error=message, target_state=target_state
        )
        # Free the service before saying so: whoever reads "retry" can retry at once.
        await self.store.release_lock(rollback.lock_key, rollback.id)
        await self.record(rollback, "rollbot", "failed", f"Rollback failed: {message}")
        await reporter.finished(rollback, render("rollback_failed.md.j2", rb=rollback))
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
                state = await self._describe(
                    self.providers.get(rollback.service, rollback.environment)
                )
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
