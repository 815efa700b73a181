"""Running an approved rollback under its lease: steps, verification, outcome.

The lease taken at approval is renewed by a heartbeat while the rollback runs; every
state write carries its fencing token, so a process that lost it (paused, partitioned,
taken over) can no longer change anything. A rollback whose owner's lease expired, or
whose owner died on this machine, is taken over by a sweeper (bot/takeover.py) that
goes on from where it stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from bot.errors import Conflict, RollbotError
from bot.leases import renewing
from bot.models import Lock, Rollback, State, StepStatus, utcnow
from bot.planning import describe, ran, run_step
from bot.render import render
from bot.reporting import Guarded, Reporter
from bot.states import Trigger
from bot.store.base import Fenced, StoreUnavailable
from bot.text import escape
from bot.time_words import duration
from bot.tracing import provider_call, rollback_run
from bot.verification import CheckResult, all_passed, render_table, run_checks
from providers.base import ProviderError, running_for

if TYPE_CHECKING:
    from bot.engine import Engine

log = structlog.get_logger(__name__)

NO_CHECKS = "no checks configured"

# What runs an approved rollback once it is "running", up to its outcome.
Runner = Callable[[Rollback, Reporter], Awaitable[Rollback]]


def failure_text(rollback: Rollback) -> str:
    """Render what failed, where each target stands and the guide's options."""
    return render("rollback_failed.md.j2", rb=rollback, restorable=rollback.touched_database)


class Execution:
    """The Engine's part that runs approved rollbacks (mixed into Engine)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._active: set[asyncio.Task[object]] = set()
        # Rollbacks an execute() call of this process is running: a second call for one of
        # them (a double click that got this far, a bug) returns at once and touches nothing.
        self._executing: set[str] = set()

    def _engine(self) -> Engine:
        return self  # type: ignore[return-value]

    @property
    def _ttl(self) -> timedelta:
        return timedelta(seconds=self._engine().config.runtime.lock_ttl_seconds)

    async def execute(
        self, rollback_id: str, reporter: Reporter, run: Runner | None = None
    ) -> Rollback | None:
        """Run an approved rollback and verify it; None when it does not run here.

        It runs in the process that approved it (which holds its lease). `run` replaces
        what runs between "running" and the outcome (a drill runs two legs); the lease,
        the shutdown and the crash handling around it stay the same.
        """
        engine = self._engine()
        guarded = Guarded(reporter)
        if rollback_id in self._executing:
            return None
        try:
            approved = await engine.rollbacks.get(rollback_id)
        except StoreUnavailable as exc:
            self._leave_to_takeover(rollback_id, exc)
            return None
        lease = engine.leases.get(rollback_id)
        if approved is None or approved.state is not State.APPROVED or lease is None:
            return None
        async with self._owning(approved, lease, guarded) as owned:
            if not owned or await self._stale(approved, guarded):
                return None
            steps = f" in {len(approved.steps)} steps" if approved.multi_step else ""
            try:
                rollback = await engine.apply(
                    approved,
                    Trigger.START,
                    "rollbot",
                    None
                    if approved.drill
                    else f"Rolling back {approved.service}/{approved.environment} to "
                    f"{approved.shown_target}{steps}",
                )
            except Conflict:
                return None  # cancelled or taken over since approval: not ours to run
            log.info("rollback started", user=rollback.requested_by)
            return await (run or self._run)(rollback, guarded)

    @asynccontextmanager
    async def _owning(
        self, rollback: Rollback, lease: Lock, reporter: Reporter, *, resumed: bool = False
    ) -> AsyncIterator[bool]:
        """Run a block as this process's one runner of a rollback, renewing its lease.

        The block runs in the rollback's trace (bot/tracing.py); a `resumed` run starts
        a new one. Yields False when another call here runs it already. A database that
        stops answering leaves the rollback to a takeover; whatever else escapes the block (a
        bug, a shutdown, a lost lease) records it interrupted, so it is never left
        "running" forever, the service locked, or the thread silent.
        """
        if rollback.id in self._executing:
            yield False
            return
        self._executing.add(rollback.id)
        task = asyncio.current_task()
        if task:
            self._active.add(task)
        started = self._clock()
        try:
            with rollback_run(rollback, resumed=resumed):
                async with renewing(self._engine().lease_table, lease, self._ttl):
                    yield True
        except StoreUnavailable as exc:
            # Not an interruption: rollbot runs, its database does not answer. What this
            # process could not record it must not guess at either; the rollback is left
            # as recorded, and a takeover goes on with it once the database is back.
            self._leave_to_takeover(rollback.id, exc)
        except BaseException:
            await asyncio.shield(self._interrupted(rollback.id, reporter))
            raise
        finally:
            self._executing.discard(rollback.id)
            if task:
                self._active.discard(task)
        log.info(
            "rollback finished",
            rollback_id=rollback.id,
            duration_s=round(self._clock() - started, 2),
        )

    def _leave_to_takeover(self, rollback_id: str, error: StoreUnavailable) -> None:
        """Stop running a rollback whose records cannot be written now; keep its lease.

        This process forgets the lease, so no write of its own lands any more; the lease
        lapses within `lock_ttl_seconds`, and the first sweep (of any replica, this one
        included) that reaches the database then takes the rollback over, asks the
        platform what runs, and finishes it from where it stopped.
        """
        self._engine().leases.pop(rollback_id, None)
        log.warning(
            "store lost mid-rollback; left to a takeover",
            rollback_id=rollback_id,
            reason=error.message,
        )

    async def _stale(self, rollback: Rollback, reporter: Reporter) -> bool:
        """Cancel an approved rollback whose service was redeployed since the request."""
        first_done = bool(rollback.steps) and rollback.steps[0].status is StepStatus.DONE
        if first_done and rollback.bad_commit:
            return False  # a reverted commit leaves no version name to compare with
        expected = rollback.target_version if first_done else rollback.current_version
        provider = self._engine().providers.get(rollback.service, rollback.environment)
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
        moved = await self._engine().apply(
            rollback,
            Trigger.CANCEL_STALE,
            "rollbot",
            why,
            error=why,
            target_state=f"unchanged: runs {running}",
        )
        await reporter.finished(moved, f":information_source: {escape(why)}")
        return True

    async def _interrupted(self, rollback_id: str, reporter: Reporter) -> None:
        engine = self._engine()
        if rollback_id not in engine.leases:
            return  # finished, or taken over by another process: it is not ours to end
        try:
            rollback = await engine.get(rollback_id)
            moved = await engine.apply(
                rollback,
                Trigger.INTERRUPT,
                "rollbot",
                "rollbot stopped in the middle of this rollback.",
                error="rollbot stopped in the middle of this rollback.",
                target_state=await self.state_now(rollback),
            )
        except RollbotError as exc:
            # Taken over (fenced) or moved on: this process holds nothing of it any more.
            engine.leases.pop(rollback_id, None)
            log.warning("could not record the interruption", reason=exc.message)
            return
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
        for index, step in enumerate(rollback.steps):
            if step.status in {StepStatus.DONE, StepStatus.SKIPPED}:
                continue
            failed = await self._run_step(rollback, reporter, index)
            if failed is not None:
                return failed
        rollback = await self._verified(await self._engine().get(rollback.id), reporter)
        if rollback.state is not State.VERIFYING:
            return rollback
        checked = rollback.verification != NO_CHECKS
        rollback = await self._engine().apply(
            rollback,
            Trigger.SUCCEED,
            "rollbot",
            f"Rolled back to {rollback.shown_target}; "
            + ("verification passed" if checked else "no checks configured"),
        )
        if not rollback.dry_run:
            rollback = await self._engine().freeze_after(rollback)
        await reporter.finished(rollback, self.notification(rollback, verified=checked))
        return rollback

    async def _verified(self, rollback: Rollback, reporter: Reporter) -> Rollback:
        """Verify a rollback whose steps ran: VERIFYING when the checks pass, else FAILED."""
        rollback = await self._engine().apply(rollback, Trigger.VERIFY, "rollbot", None)
        results = await self.verify(rollback)
        rollback = await self.write(
            rollback,
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
        await self._engine().record(rollback, "rollbot", "step", text)
        await reporter.progress(rollback, text)

    async def _run_step(
        self, rollback: Rollback, reporter: Reporter, index: int
    ) -> Rollback | None:
        """Run one step; on failure mark it and the later ones, and fail the rollback."""
        engine = self._engine()
        step = rollback.steps[index]
        target = engine.providers.step(rollback.service, rollback.environment, index)
        count = len(rollback.steps)
        prefix = f"Step {index + 1}/{count} ({step.name}): " if rollback.multi_step else ""

        said: set[str] = set()

        async def progress(text: str) -> None:
            said.add(text)
            await self._progress(rollback, reporter, prefix + text)

        await self._set_step(rollback.id, index, status=StepStatus.RUNNING)
        if rollback.multi_step:
            await self._progress(rollback, reporter, f"Step {index + 1}/{count}: {step.heading}")
        timeout = engine.config.runtime.rollback_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                commit = rollback.bad_commit if index == 0 else None
                with running_for(rollback.id), provider_call(rollback, index, step):
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
                state = await self.state_now(await engine.get(rollback.id), {index: state})
            return await self._fail(rollback, reporter, message, state, failed_step=index)
        for note in [outcome.summary, *outcome.notes]:
            if note not in said:  # providers often report their last line as the summary too
                await progress(note)
        await self._set_step(
            rollback.id,
            index,
            status=StepStatus.DONE,
            result=outcome.summary,
            **ran(step, outcome),
        )
        return None

    async def write(self, rollback: Rollback, **fields: object) -> Rollback:
        """Set fields of a rollback this process runs, under its lease's fencing token."""
        engine = self._engine()
        lease = engine.leases.get(rollback.id)
        if lease is None:
            raise Fenced(f"Rollback {rollback.id} is not running in this process.")
        return await engine.rollbacks.update(rollback.id, fence=(lease.key, lease.token), **fields)

    async def _set_step(self, rollback_id: str, index: int, **fields: object) -> Rollback:
        rollback = await self._engine().get(rollback_id)
        steps = list(rollback.steps)
        status = fields.get("status")
        if status is StepStatus.RUNNING:
            fields = {**fields, "started_at": utcnow(), "finished_at": None}
        elif status in (StepStatus.DONE, StepStatus.FAILED):
            fields = {**fields, "finished_at": utcnow()}
        steps[index] = steps[index].model_copy(update=fields)
        return await self.write(rollback, steps=steps)

    async def state_now(self, rollback: Rollback, known: dict[int, str] | None = None) -> str:
        """Say what each step's target holds now, asked from it (`known`: already asked)."""
        known = known or {}
        lines = []
        for index, step in enumerate(rollback.steps or [None]):
            state = known.get(index) or await describe(
                self._engine().providers.step(rollback.service, rollback.environment, index)
            )
            if step is None or not rollback.multi_step:
                return state
            lines.append(f"{index + 1}. {step.name} ({step.status.value}): {state}")
        return "\n".join(lines)

    async def verify(self, rollback: Rollback) -> list[CheckResult]:
        """Run the environment's checks and record the outcome."""
        engine = self._engine()
        checks = engine.config.environment(rollback.service, rollback.environment).checks
        runtime = engine.config.runtime
        results = await run_checks(
            checks,
            deadline_seconds=runtime.verify_deadline_seconds,
            interval_seconds=runtime.verify_interval_seconds,
        )
        passed = sum(r.ok for r in results)
        await engine.record(
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
        # The store frees the service with the same write: whoever reads "retry" can.
        rollback = await self._engine().apply(
            await self._engine().get(rollback.id),
            Trigger.FAIL,
            "rollbot",
            f"Rollback failed: {message}",
            error=message,
            target_state=target_state,
            failed_step=failed_step,
        )
        await reporter.finished(rollback, failure_text(rollback))
        return rollback

    def notification(self, rollback: Rollback, *, verified: bool = True) -> str:
        """Render the guide's internal notification for a finished rollback."""
        engine = self._engine()
        finished = rollback.finished_at or utcnow()
        row = engine.config.decision_matrix.get(rollback.issue or "")
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
            took=duration(finished - rollback.created_at),
        )

    # -- drills: bot/drill.py runs a rollback there and back with these -----------------

    async def run_leg(self, rollback: Rollback, reporter: Reporter) -> Rollback:
        """Run step 1 of a running rollback to its target, then verify; the lease stays held.

        Returns the rollback verifying (its checks passed) or failed, as a rollback's own
        run leaves it, so a drill can go on to its next leg or stop where it failed.
        """
        failed = await self._run_step(rollback, reporter, 0)
        if failed is not None:
            return failed
        return await self._verified(await self._engine().get(rollback.id), reporter)


__all__ = ["NO_CHECKS", "Execution", "Guarded", "Runner", "failure_text"]
