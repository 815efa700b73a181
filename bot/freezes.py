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
from bot.states import Who
from bot.text import mention
from providers.base import ProviderError
from providers.capabilities import Freeze, FreezeRecord

if TYPE_CHECKING:
    from bot.engine import Engine

log = structlog.get_logger(__name__)


def freeze_line(freeze: FreezeState, service: str, environment: str) -> str:
    """Say in one line what a freeze keeps out, how, and how to end it."""
    how = "; ".join(entry.action for entry in freeze.entries) or "watch only"
    return (
        f"Frozen since {freeze.since:%Y-%m-%d %H:%M} UTC: {freeze.bad} is kept out of "
        f"{service}/{environment} ({how}). An approver ends it with "
        f"`/rollback unfreeze {service} env={environment}`."
    )


class Freezes:
    """Freezing after a rollback and unfreezing (mixed into Engine)."""

    def _engine(self) -> Engine:
        return self  # type: ignore[return-value]

    async def freeze_after(self, rollback: Rollback) -> Rollback:
        """Keep the bad version out of each step that ran, where its platform allows."""
        engine = self._engine()
        entries = []
        for index, step in enumerate(rollback.steps):
            if step.status is not StepStatus.DONE or step.current is None or not step.target:
                continue
            target = engine.providers.step(rollback.service, rollback.environment, index)
            name = step.name if rollback.multi_step else rollback.service
            if not isinstance(target, Freeze):
                action = f"{name}: watch only (no platform setting to change)"
                entries.append(FreezeEntry(step=index, action=action))
                continue
            try:
                record = await target.freeze(step.current, step.target)
            except ProviderError as exc:
                log.warning("freeze failed", rollback_id=rollback.id, step=step.name)
                action = f"{name}: watch only (freezing failed: {exc.message})"
                entries.append(FreezeEntry(step=index, action=action))
                continue
            entries.append(
                FreezeEntry(
                    step=index,
                    action=f"{name}: {record.action}",
                    saved=record.saved,
                    acted=bool(record.saved),
                )
            )
        await self._supersede(rollback)
        freeze = FreezeState(
            bad=rollback.current_version,
            good=rollback.target_version,
            since=utcnow(),
            entries=entries,
        )
        rollback = await engine.rollbacks.update(rollback.id, freeze=freeze)
        text = freeze_line(freeze, rollback.service, rollback.environment)
        await engine.record(rollback, "rollbot", "frozen", text)
        return rollback

    async def _supersede(self, rollback: Rollback) -> None:
        """End the freeze of an earlier rollback of the same service: this one's replaces it."""
        engine = self._engine()
        earlier = await self.frozen(rollback.service, rollback.environment)
        if earlier is None or earlier.id == rollback.id or earlier.freeze is None:
            return
        ended = earlier.freeze.model_copy(update={"ended_at": utcnow(), "ended_by": "rollbot"})
        await engine.rollbacks.update(earlier.id, freeze=ended)
        text = f"Freeze replaced by the one of rollback {rollback.id}."
        await engine.record(earlier, "rollbot", "unfrozen", text)

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
        said = []
        for entry in rollback.freeze.entries:
            target = engine.providers.step(service, env, entry.step)
            if not entry.acted or not isinstance(target, Freeze):
                continue
            try:
                said.append(await target.unfreeze(FreezeRecord(entry.action, entry.saved)))
            except ProviderError as exc:
                # Fail closed: a setting not put back leaves the freeze in place.
                raise InvalidRequest(
                    f"Not unfrozen: {exc.message} The freeze of {service}/{env} stays; "
                    "fix the setting by hand, then unfreeze again."
                ) from exc
        ended = rollback.freeze.model_copy(update={"ended_at": utcnow(), "ended_by": user})
        rollback = await engine.rollbacks.update(rollback.id, freeze=ended)
        restored = "; ".join(said) or "nothing to put back (watched only)"
        text = f"Unfrozen by {mention(user)}: {ended.bad} may be deployed again; {restored}."
        await engine.record(rollback, user, "unfrozen", text)
        return rollback, text
