"""The guide's quarterly rollback drill: back to the previous version and forward again.

A drill is a Rollback with `drill=True`, so the store, the history and the service lock
treat it as they treat any rollback; the engine runs each leg (`Engine.run_leg`) the way
it runs a rollback's first step and its verification. A drill never runs in a protected
environment, so it needs no approval: anyone allowed to request rollbacks of the service
may start one. It takes the service's lease when it starts and holds it through both legs. It
exercises the environment's provider only: later plan steps (migrations, state clears)
cannot be rolled forward again, so they are not part of a drill.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.engine import Engine, new_rollback_id
from bot.errors import Conflict, InvalidRequest, NotAllowed
from bot.models import PlanStep, Rollback, State
from bot.names import NAME_PATTERN
from bot.planning import plan_first, shown_names
from bot.render import render
from bot.reporting import Reporter
from bot.states import Trigger
from bot.time_words import duration
from bot.verification import CheckResult

DEFAULT_ENVIRONMENT = "staging"


def drill_failure_text(rollback: Rollback) -> str:
    """Say where a drill stopped, what runs now and what to do."""
    return render("drill_failed.md.j2", rb=rollback, back=rollback.drill_back_seconds is None)


def drill_summary(rollback: Rollback) -> str:
    """Say that a drill passed, with the time of each leg."""
    back = duration(rollback.drill_back_seconds or 0)
    forward = duration(rollback.drill_forward_seconds or 0)
    return (
        f":white_check_mark: *Drill {rollback.id} passed* on {rollback.service}/"
        f"{rollback.environment}: back to {rollback.shown_target} in {back}, forward to "
        f"{rollback.shown_current} in {forward}, both verified. It runs "
        f"{rollback.shown_current} again, as before the drill."
    )


class _DrillReport:
    """A Reporter that tells a drill's outcome in a drill's words."""

    def __init__(self, inner: Reporter) -> None:
        self._inner = inner

    async def progress(self, rollback: Rollback, text: str) -> None:
        await self._inner.progress(rollback, text)

    async def verified(self, rollback: Rollback, results: list[CheckResult]) -> None:
        await self._inner.verified(rollback, results)

    async def finished(self, rollback: Rollback, summary: str) -> None:
        if rollback.state in {State.FAILED, State.INTERRUPTED}:
            summary = drill_failure_text(rollback)
        await self._inner.finished(rollback, summary)


class Drills:
    """Starts and runs drills with the engine's store, leases, providers and checks."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self._clock = clock

    def environment(self, service: str, environment: str | None) -> str:
        """Return the environment a drill means (staging by default)."""
        svc = self.engine.config.services.get(service)
        if environment is None and svc is not None and DEFAULT_ENVIRONMENT not in svc.environments:
            others = [
                name
                for name in sorted(svc.environments)
                if not self.engine.access.protected(service, name)
            ]
            raise InvalidRequest(
                f"{service} has no {DEFAULT_ENVIRONMENT} environment; name the one to drill "
                f"with env=ENV ({', '.join(others) or 'it has only protected ones'})."
            )
        return self.engine.resolve(service, environment or DEFAULT_ENVIRONMENT)

    async def start(
        self,
        *,
        service: str,
        environment: str | None,
        user: str,
        channel_id: str | None = None,
    ) -> Rollback:
        """Check the request, record the drill and take the service's lease for it."""
        for what, value in (("service", service), ("environment", environment)):
            if value is not None and not NAME_PATTERN.fullmatch(value):
                raise InvalidRequest(f"{value[:40]!r} is not a valid {what}.")
        engine = self.engine
        env = self.environment(service, environment)
        try:
            await engine.access.check_drill(service, env, user)
            await engine.refuse_if_busy(service, env)
        except (NotAllowed, Conflict) as exc:
            raise await engine.refused(None, user, "drill", exc) from None
        env, versions, current = await engine.running(service, env)
        previous = next((v.name for v in versions if v.previous_stable), None)
        if previous is None:
            raise InvalidRequest(
                f"{service}/{env} runs {current} and has no earlier version to drill with."
            )
        shown = shown_names(versions, {current: None, previous: None})
        back = await plan_first(engine.providers, service, env, current, previous, None, shown)
        drill = Rollback(
            id=new_rollback_id(),
            service=service,
            environment=env,
            requested_by=user,
            current_version=current,
            target_version=previous,
            drill=True,
            plan=[
                *back.plan,
                f"Verify, then roll forward to {current} the same way and verify again.",
            ],
            warnings=back.warnings,
            steps=[back],
            channel_id=channel_id,
        )
        drill = await engine.create(
            drill, f"{service}/{env} {current} → {previous} → {current}", drill="True"
        )
        try:
            return await engine.apply(
                drill,
                Trigger.START_DRILL,
                user,
                "No approval needed: drills never run in protected environments. Lock taken.",
            )
        except Conflict as exc:
            # Someone took the service between the request and now: close the drill.
            await engine.apply(drill, Trigger.CANCEL, user, exc.message, error=exc.message)
            raise

    async def run(self, rollback_id: str, reporter: Reporter) -> Rollback | None:
        """Run a started drill to its outcome; None when it does not run here."""
        return await self.engine.execute(rollback_id, _DrillReport(reporter), run=self._legs)

    async def _legs(self, drill: Rollback, reporter: Reporter) -> Rollback:
        """Go back to the previous version, verify, go forward again, verify."""
        engine = self.engine
        original, previous = drill.current_version, drill.target_version
        # Said as people know them; the step itself keeps the exact names.
        said_original, said_previous = drill.shown_current, drill.shown_target
        where = f"{drill.service}/{drill.environment}"
        await self._say(drill, reporter, f"Leg 1/2: rolling {where} back to {said_previous}")
        started = self._clock()
        drill = await engine.run_leg(drill, reporter)
        if drill.state is not State.VERIFYING:
            return drill
        back = self._clock() - started
        first = drill.steps[0]
        forward = PlanStep(
            name=first.name,
            kind=first.kind,
            current=previous,
            target=original,
            shown_as=first.shown_as,
        )
        drill = await engine.write(drill, drill_back_seconds=back, steps=[forward])
        await engine.record(
            drill,
            "rollbot",
            "drill_back",
            f"Back at {said_previous}, verified, in {duration(back)}",
            seconds=f"{back:.3f}",
        )
        moved = await engine.apply(drill, Trigger.ROLL_FORWARD, "rollbot", None)
        await self._say(moved, reporter, f"Leg 2/2: rolling {where} forward to {said_original}")
        started = self._clock()
        drill = await engine.run_leg(moved, reporter)
        if drill.state is not State.VERIFYING:
            return drill
        ahead = self._clock() - started
        await engine.record(
            drill,
            "rollbot",
            "drill_forward",
            f"Forward at {said_original}, verified, in {duration(ahead)}",
            seconds=f"{ahead:.3f}",
        )
        done = await engine.apply(
            drill,
            Trigger.SUCCEED,
            "rollbot",
            f"Drill passed: back {duration(back)}, forward {duration(ahead)}",
            drill_forward_seconds=ahead,
        )
        await reporter.finished(done, drill_summary(done))
        return done

    async def _say(self, drill: Rollback, reporter: Reporter, text: str) -> None:
        await self.engine.record(drill, "rollbot", "step", text)
        await reporter.progress(drill, text)
