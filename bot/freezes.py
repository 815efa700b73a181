"""Freeze: after a verified rollback, the bad version stays out until an approver unfreezes.

Each step whose platform can act (`Freeze` in providers/capabilities.py: pause
auto-deploys, gate a commit, pin the image) does so, and what it changed is kept on the
rollback so that unfreezing restores exactly that. A step whose platform cannot act is
watched only. A freeze that fails on a platform does not undo the rollback: it is
recorded as watch only, with why. Part of the Engine (mixed into it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from bot.errors import InvalidRequest
from bot.models import FreezeEntry, FreezeState, Rollback, State, StepStatus, utcnow
from bot.planning import version_now
from bot.states import Who
from bot.text import mention
from providers.base import ProviderError
from providers.capabilities import Freeze, FreezeRecord

if TYPE_CHECKING:
    from bot.engine import Engine

log = structlog.get_logger(__name__)


def freeze_line(rollback: Rollback) -> str:
    """Say in one line what a rollback's freeze keeps out, how, and how to end it."""
    freeze = rollback.freeze
    assert freeze is not None
    service, environment = rollback.service, rollback.environment
    how = "; ".join(entry.action for entry in freeze.entries) or "watch only"
    return (
        f"Frozen since {freeze.since:%Y-%m-%d %H:%M} UTC: {rollback.shown(freeze.bad)} is kept "
        f"out of {service}/{environment} ({how}). An approver ends it with "
        f"`/rollback unfreeze {service} env={environment}`."
    )


class Freezes:
    """Freezing after a rollback and unfreezing (mixed into Engine)."""

    def _engine(self) -> Engine:
        return self  # type: ignore[return-value]

    async def freeze_after(self, rollback: Rollback) -> Rollback:
        """Keep the bad version out of each step that ran, where its platform allows."""
        engine = self._engine()
        # The earlier freeze's settings go back first, so that this freeze records the
        # platform as it was before any freeze, and unfreezing restores exactly that.
        await self._supersede(rollback)
        entries = []
        for index, step in enumerate(rollback.steps):
            if step.status is not StepStatus.DONE or step.current is None or not step.target:
                continue
            name = step.name if rollback.multi_step else rollback.service
            entry = await self._freeze_step(rollback, index, name)
            running = await self._running_now(rollback, index)
            entries.append(entry.model_copy(update={"running": running}))
        freeze = FreezeState(
            bad=rollback.current_version,
            good=rollback.target_version,
            since=utcnow(),
            entries=entries,
        )
        rollback = await engine.rollbacks.update(rollback.id, freeze=freeze)
        text = freeze_line(rollback)
        await engine.record(rollback, "rollbot", "frozen", text)
        return rollback

    async def _freeze_step(self, rollback: Rollback, index: int, name: str) -> FreezeEntry:
        """Freeze one step's platform; any failure leaves it watched only, saying why."""
        step = rollback.steps[index]
        assert step.current is not None and step.target is not None
        target = self._engine().providers.step(rollback.service, rollback.environment, index)
        if not isinstance(target, Freeze):
            return FreezeEntry(
                step=index, action=f"{name}: watch only (no platform setting to change)"
            )
        try:
            record = await target.freeze(step.current, step.target)
        except ProviderError as exc:
            log.warning("freeze failed", rollback_id=rollback.id, step=step.name)
            why = exc.message
        # The rollback itself succeeded: whatever a freeze raises, that must be reported.
        except Exception as exc:
            log.exception("freeze failed unexpectedly", rollback_id=rollback.id, step=step.name)
            why = f"unexpected {type(exc).__name__}; see the bot's log"
        else:
            action = f"{name}: {record.action}"
            return FreezeEntry(
                step=index, action=action, saved=record.saved, acted=bool(record.saved)
            )
        return FreezeEntry(step=index, action=f"{name}: watch only (freezing failed: {why})")

    async def _running_now(self, rollback: Rollback, index: int) -> str | None:
        """The version a step's target runs right after the rollback, if it can say."""
        target = self._engine().providers.step(rollback.service, rollback.environment, index)
        try:
            return await version_now(target)
        except ProviderError as exc:
            log.warning(
                "freeze could not read the version", rollback_id=rollback.id, error=exc.message
            )
            return None

    async def _supersede(self, rollback: Rollback) -> None:
        """End an earlier rollback's freeze of the same service, putting its settings back."""
        engine = self._engine()
        earlier = await self.frozen(rollback.service, rollback.environment)
        if earlier is None or earlier.id == rollback.id or earlier.freeze is None:
            return
        said, failed = await self._restore(earlier, earlier.freeze)
        ended = earlier.freeze.model_copy(update={"ended_at": utcnow(), "ended_by": "rollbot"})
        await engine.rollbacks.update(earlier.id, freeze=ended)
        text = f"Freeze replaced by the one of rollback {rollback.id}"
        if said:
            text += f"; first {'; '.join(said)}"
        if failed:
            text += f". Not put back, check by hand: {'; '.join(failed)}"
        await engine.record(earlier, "rollbot", "unfrozen", text + ".")

    async def _restore(
        self, rollback: Rollback, freeze: FreezeState
    ) -> tuple[list[str], list[str]]:
        """Put back each platform setting a freeze changed: (what was said, what failed)."""
        said: list[str] = []
        failed: list[str] = []
        for entry in freeze.entries:
            target = self._engine().providers.step(
                rollback.service, rollback.environment, entry.step
            )
            if not entry.acted or not isinstance(target, Freeze):
                continue
            try:
                said.append(await target.unfreeze(FreezeRecord(entry.action, entry.saved)))
            except ProviderError as exc:
                failed.append(exc.message)
        return said, failed

    async def frozen(self, service: str, environment: str) -> Rollback | None:
        """Return the rollback whose freeze holds a service environment now, if any."""
        engine = self._engine()
        done = await engine.rollbacks.find(
            states={State.SUCCEEDED}, service=service, environment=environment, limit=10
        )
        return next((rb for rb in done if rb.freeze is not None and rb.freeze.active), None)

    async def unfreeze(
        self, service: str, environment: str | None, user: str
    ) -> tuple[Rollback, str]:
        """End a freeze (an approver's act), putting each platform setting back; say what."""
        engine = self._engine()
        env = engine.resolve(service, environment)
        rollback = await self.frozen(service, env)
        if rollback is None or rollback.freeze is None:
            raise InvalidRequest(f"{service}/{env} is not frozen.")
        await engine.check(Who.APPROVER, rollback, user, "unfreeze it", "unfreeze")
        said, failed = await self._restore(rollback, rollback.freeze)
        if failed:
            # Fail closed: a setting not put back leaves the freeze in place.
            done = f" Put back meanwhile: {'; '.join(said)}." if said else ""
            raise InvalidRequest(
                f"Not unfrozen: {' '.join(failed)}{done} The freeze of {service}/{env} stays; "
                "fix the setting by hand, then unfreeze again."
            )
        ended = rollback.freeze.model_copy(update={"ended_at": utcnow(), "ended_by": user})
        rollback = await engine.rollbacks.update(rollback.id, freeze=ended)
        restored = "; ".join(said) or "nothing to put back (watched only)"
        bad = rollback.shown(ended.bad)
        text = f"Unfrozen by {mention(user)}: {bad} may be deployed again; {restored}."
        await engine.record(rollback, user, "unfrozen", text)
        return rollback, text
