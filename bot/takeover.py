"""Taking over what a dead replica left: expired requests, and rollbacks whose lease lapsed.

A rollback whose owner died (its lease expired, or its process is gone from this machine)
is taken over with a new lease, so the old owner's late writes are fenced. The survivor
then repairs what the crash left half-done (a container swap cut short), asks the
platform what runs, and goes on from the first step not done: it verifies a step that
finished, runs again one that never took effect, and marks the rollback interrupted,
with the real state, when it cannot tell which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from bot.errors import RollbotError
from bot.models import Rollback, State, StepStatus, utcnow
from bot.planning import version_now
from bot.reporting import Guarded, Reporter
from bot.states import LOCKED_STATES, WAITING, Trigger
from bot.store.base import LeaseGrant
from bot.text import escape
from providers.base import ProviderError
from providers.capabilities import Reconciles

if TYPE_CHECKING:
    from bot.engine import Engine

log = structlog.get_logger(__name__)

INTERRUPTED = "Interrupted: rollbot stopped while this rollback was in flight."


@dataclass(frozen=True)
class Stopped:
    """Where a taken-over rollback stood: steps found finished, and what was found."""

    done: list[int] = field(default_factory=list)
    found: list[str] = field(default_factory=list)


class Takeover:
    """The Engine's part that sweeps and takes over (mixed into Engine)."""

    def _engine(self) -> Engine:
        return self  # type: ignore[return-value]

    async def sweep(self, reporter: Reporter | None = None) -> list[Rollback]:
        """Expire stale requests, and take over rollbacks whose owner's lease is gone.

        A rollback whose lease is alive is left alone, whoever holds it. One whose lease
        expired, or whose owner died on this machine, is taken over. With a `reporter`
        (a serving replica) it goes on in the background from where it stopped; without
        one (the terminal) it is marked interrupted with what runs. Returns the
        rollbacks moved here, so their cards and threads can say so.
        """
        engine = self._engine()
        moved: list[Rollback] = []
        now = utcnow()
        for rollback in await engine.rollbacks.find(states=WAITING, limit=500):
            limit = timedelta(minutes=engine.policy(rollback).expires_after_minutes)
            if now - rollback.created_at > limit:
                why = "Expired without approval; nothing was changed."
                moved += await _quietly(
                    engine.apply(rollback, Trigger.EXPIRE, "rollbot", why, error=why)
                )
        # Rollbacks first, leases second: a lease taken between the two reads is seen.
        locked = await engine.rollbacks.find(states=LOCKED_STATES, limit=500)
        leases = {
            lease.rollback_id: lease for lease in await engine.lease_table.locks(expired=True)
        }
        for rollback in locked:
            if rollback.id in engine.leases:
                continue  # ours, running here
            lease = leases.get(rollback.id)
            if lease and lease.live(now) and not engine.owner.surely_dead(lease.owner):
                continue  # alive in another process: never touched
            me = str(engine.owner)
            taken = await engine.lease_table.take_lease(
                rollback.lock_key,
                rollback.id,
                LeaseGrant("rollbot", me, engine._ttl),
                takeover_from=lease.owner if lease else None,
            )
            if taken.rollback_id != rollback.id or taken.owner != me:
                continue
            now_recorded = await engine.rollbacks.get(rollback.id)
            if now_recorded is None or now_recorded.state not in LOCKED_STATES:
                # It finished (and freed its lease) after it was read: give the lease back.
                await engine.lease_table.release_lease(taken.key, rollback.id, taken.token)
                continue
            rollback = now_recorded
            engine.leases[rollback.id] = taken
            log.warning(
                "rollback taken over",
                rollback_id=rollback.id,
                state=rollback.state.value,
                previous_owner=lease.owner if lease else None,
            )
            if reporter is not None:
                self._in_background(self.resume(rollback, reporter))
                continue
            found = await self._orphaned(rollback)
            if not found and engine.leases.pop(rollback.id, None) is not None:
                await engine.lease_table.release_lease(taken.key, rollback.id, taken.token)
            moved += found
        return moved

    async def resume(self, rollback: Rollback, reporter: Reporter) -> Rollback | None:
        """Go on with a rollback taken over from a dead owner, from where it stopped."""
        engine = self._engine()
        lease = engine.leases.get(rollback.id)
        if lease is None:
            return None
        guarded = Guarded(reporter)
        async with engine._owning(rollback, lease, guarded, resumed=True) as owned:
            if not owned:
                return None
            stopped = await self._where_it_stopped(rollback)
            if stopped is None:
                orphaned = await self._orphaned(rollback)
                return orphaned[0] if orphaned else None
            if rollback.state is State.APPROVED and await engine._stale(rollback, guarded):
                return None
            for index in stopped.done:
                await engine._set_step(
                    rollback.id,
                    index,
                    status=StepStatus.DONE,
                    result="finished before rollbot was interrupted (the platform confirms it)",
                )
            said = (
                f":arrows_counterclockwise: Taken over by {engine.owner.host}: the rollbot that "
                f"ran this stopped. {' '.join(stopped.found)}"
            )
            moved = await engine.apply(
                await engine.get(rollback.id), Trigger.RESUME, "rollbot", said
            )
            await guarded.progress(moved, escape(said))
            return await engine._run(moved, guarded)
        return None

    async def _where_it_stopped(self, rollback: Rollback) -> Stopped | None:
        """Ask each step's target what runs; None when a half-done step cannot be told apart.

        Before asking, a target that can repairs what the crash left (a container swap
        cut short), so the service is not left down whatever is decided next.
        """
        engine = self._engine()
        for index, step in enumerate(rollback.steps):
            label = f"Step {index + 1} ({step.name})" if rollback.multi_step else step.name
            if step.status in {StepStatus.DONE, StepStatus.SKIPPED}:
                continue
            if step.status is StepStatus.PENDING:
                return Stopped(found=[f"{label} had not started; running it now."])
            if step.status is not StepStatus.RUNNING:
                return None
            target = engine.providers.step(rollback.service, rollback.environment, index)
            try:
                repaired = await target.reconcile() if isinstance(target, Reconciles) else []
                if step.target is None or (index == 0 and rollback.bad_commit):
                    return None  # nothing to compare with: a revert or a state clear
                running = await version_now(target)
            except ProviderError as exc:
                log.warning("takeover could not ask the platform", reason=exc.message)
                return None
            if running is None:
                return None
            if running == step.target:
                found = f"{label} already runs {running}: it finished; verifying."
                return Stopped(done=[index], found=[*repaired, found])
            if running == step.current:
                found = f"{label} still runs {running}: it had not taken effect; running it again."
                return Stopped(found=[*repaired, found])
            return None
        return Stopped(found=["Every step had finished; verifying."])

    async def _orphaned(self, rollback: Rollback) -> list[Rollback]:
        """Mark a taken-over rollback interrupted with what runs now."""
        engine = self._engine()
        state = await engine.state_now(rollback)
        return await _quietly(
            engine.apply(
                await engine.get(rollback.id),
                Trigger.ORPHAN,
                "rollbot",
                INTERRUPTED,
                error=INTERRUPTED,
                target_state=state,
            )
        )

    def _in_background(self, work: Awaitable[Rollback | None]) -> None:
        """Run a resumed rollback beside the sweeper; a drain waits for it like any other."""
        task = asyncio.ensure_future(work)
        engine = self._engine()
        engine._active.add(task)

        def done(finished: asyncio.Task[Rollback | None]) -> None:
            engine._active.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("resumed rollback failed", exc_info=finished.exception())

        task.add_done_callback(done)


async def _quietly(move: Awaitable[Rollback]) -> list[Rollback]:
    """Apply a sweeper's transition; someone else moving it first is no error."""
    try:
        return [await move]
    except RollbotError as exc:
        log.info("sweep skipped", reason=exc.message)
        return []
