"""While a service is frozen, watch what runs; say at once in the thread when it drifts.

One durable job per freeze (the scheduler runs it on one replica at a time) compares each
step's version with the one the rollback went back to, every `freeze_watch_seconds`. A
new version is posted once, naming it and whether it is the bad one, with "Roll back
again" and "Unfreeze (accept this version)".
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, SectionBlock

from bot.engine import Engine
from bot.jobs import Clock, Job, JobKind, job_id
from bot.models import PlanStep, Rollback, State, StepStatus, utcnow
from bot.planning import version_now
from bot.pool import Target
from bot.scheduler import Again, Done
from bot.states import LOCKED_STATES
from bot.text import escape, one_line
from handlers.blocks import dump
from handlers.fit import BUTTON_TEXT_MAX
from handlers.ids import ActionId
from handlers.thread import SlackThread
from providers.base import ProviderError
from providers.capabilities import ClearsState, Describe

log = structlog.get_logger(__name__)


class FreezeWatch:
    """Starts a watch when a rollback is frozen, and runs its rounds."""

    def __init__(self, engine: Engine, thread: SlackThread, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.thread = thread
        self.clock = clock

    @property
    def every(self) -> timedelta:
        """How long between two looks."""
        return timedelta(seconds=self.engine.config.runtime.freeze_watch_seconds)

    async def on_rollback_moved(self, rb: Rollback) -> None:
        """Hook: start watching a rollback that has just been frozen."""
        if rb.state is not State.SUCCEEDED or rb.freeze is None or not rb.freeze.active:
            return
        job = Job(
            id=job_id(JobKind.FREEZE_WATCH, rb.id),
            rollback_id=rb.id,
            kind=JobKind.FREEZE_WATCH,
            due_at=self.clock() + self.every,
            payload={"seen": []},
        )
        await self.engine.jobs.schedule_job(job)  # False: this hook ran before

    async def run(self, job: Job, now: datetime) -> Again | Done | None:
        """Job: compare what runs with the rolled-back version; post a drift once."""
        rb = await self.engine.rollbacks.get(job.rollback_id)
        if rb is None or rb.freeze is None or not rb.freeze.active:
            return Done(job.payload)  # unfrozen: nothing left to watch
        seen: list[str] = list(job.payload.get("seen", []))
        if await self._overtaken(rb):
            # rollbot itself is changing what runs: that is not drift, and the newer
            # rollback's freeze replaces this one when it succeeds.
            return Again(now + self.every, {"seen": seen})
        kept = {entry.step: entry.running for entry in rb.freeze.entries}
        for index, step in enumerate(rb.steps):
            if step.status is not StepStatus.DONE or step.target is None:
                continue
            target = self.engine.providers.step(rb.service, rb.environment, index)
            try:
                running = await version_now(target)
            except ProviderError as exc:
                log.warning("freeze watch could not read", rollback_id=rb.id, error=exc.message)
                continue
            if running in (None, step.target, kept.get(index)) or running in seen:
                continue
            seen.append(running)
            name = step.name if rb.multi_step else rb.service
            bad = await self._is_bad(target, step, running)
            await self._drifted(rb, name, await self._shown(rb, target, running), bad=bad)
        return Again(now + self.every, {"seen": seen})

    @staticmethod
    async def _shown(rb: Rollback, target: Target, running: str) -> str:
        """Say what runs as people know it: a new deployment id by its image tag or commit."""
        known = rb.shown(running)
        if known != running or isinstance(target, ClearsState):
            return known
        try:
            versions = await target.list_versions()
        except ProviderError:
            return running  # the id alone still says what runs
        return next((v.shown() for v in versions if v.name == running), running)

    @staticmethod
    async def _is_bad(target: Target, step: PlanStep, running: str) -> bool:
        """The bad version again: the same version, or (new deployment id) the same build."""
        if running == step.current:
            return True
        if step.build_current is None or not isinstance(target, Describe):
            return False
        try:
            return (await target.identity_now()).build == step.build_current
        except ProviderError:
            return False

    async def _overtaken(self, rb: Rollback) -> bool:
        """True while a newer rollback of the same service environment runs or has won."""
        assert rb.freeze is not None
        others = await self.engine.rollbacks.find(
            states=LOCKED_STATES | {State.SUCCEEDED},
            service=rb.service,
            environment=rb.environment,
            limit=10,
        )
        return any(
            other.id != rb.id
            and (
                other.state in LOCKED_STATES
                or (other.finished_at is not None and other.finished_at > rb.freeze.since)
            )
            for other in others
        )

    async def _drifted(self, rb: Rollback, step: str, running: str, *, bad: bool) -> None:
        where = f"{rb.service}/{rb.environment}"
        what = "the bad version this rollback took out" if bad else "a version deployed since"
        text = (
            f"{where} is frozen, but {step} now runs {running}: {what} (rolled back to "
            f"{rb.shown_target} by {rb.id})."
        )
        await self.engine.record(rb, "rollbot", "drift", text)
        if not (rb.channel_id and rb.thread_ts):
            return
        blocks = [
            SectionBlock(text=f":rotating_light: {escape(text)}"),
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text=one_line(f"Roll back again to {rb.shown_target}", BUTTON_TEXT_MAX),
                        action_id=ActionId.ROLLBACK_AGAIN,
                        value=rb.id,
                        style="danger",
                    ),
                    ButtonElement(
                        text="Unfreeze (accept this version)",
                        action_id=ActionId.UNFREEZE,
                        value=rb.id,
                    ),
                ]
            ),
        ]
        await self.thread.client.chat_postMessage(
            channel=rb.channel_id,
            thread_ts=rb.thread_ts,
            text=f":rotating_light: {text}",
            blocks=dump(blocks),
            reply_broadcast=bad,
        )
