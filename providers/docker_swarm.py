"""Docker Swarm provider: put a service's previous spec back, as `docker service rollback` does.

Swarm keeps one `PreviousSpec` per service; the rollback is Swarm's own server-side one
(`POST /services/{id}/update?version=N&rollback=previous`), so the whole previous spec
comes back (image, env, command, mounts), not just an image. Versions are the image tags
of the current and the previous spec; no other tag can be a target: updating only the
image to some older tag would pair it with today's env and command, a combination that
never ran, which is a deploy and not a rollback.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    Conflicting,
    NotFound,
    Outcome,
    Plan,
    Progress,
    ProviderError,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
    Version,
    say,
    state_or_unknown,
)
from providers.capabilities import FreezeRecord, Identity, PreflightReport
from providers.ecs_freeze import WatchOnlyFreeze
from providers.swarm_api import SwarmApi
from providers.swarm_preflight import (
    changes,
    identity,
    idle_check,
    image_check,
    manager_check,
)
from providers.swarm_status import BUSY_STATES, Json, Specs, Tasks, image_of, state_text

log = structlog.get_logger(__name__)

SWARM_FREEZE = (
    "Swarm has no setting that keeps an image out of a service (and after this rollback "
    "its previous spec is {bad}: a `docker service rollback` would bring it back)"
)


class DockerSwarmSettings(BaseModel):
    """Settings of a `docker_swarm` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["docker_swarm"]
    service: str = Field(description="Swarm service name (or ID).")
    docker_host: str | None = Field(
        default=None,
        description="URL of a swarm manager's Docker Engine; default: DOCKER_HOST or the "
        "local socket.",
    )
    update_timeout_seconds: float = Field(
        default=300, gt=0, description="How long Swarm's rollback may take to complete."
    )
    poll_interval_seconds: float = Field(
        default=2, gt=0, description="How often the service and its tasks are read meanwhile."
    )
    api_timeout_seconds: float = Field(
        default=30, gt=0, description="Deadline of one Docker Engine API call."
    )


class DockerSwarmProvider(WatchOnlyFreeze):
    """Roll a swarm service back to its previous spec with Swarm's own rollback."""

    watch_only_because = SWARM_FREEZE

    def __init__(self, settings: DockerSwarmSettings) -> None:
        self._settings = settings
        self._api = SwarmApi(settings.docker_host, settings.service, settings.api_timeout_seconds)

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the image tag of the service's current spec."""
        return (await self._specs()).current_name

    async def list_versions(self) -> list[Version]:
        """Return the current spec's version and, if Swarm keeps one, the previous spec's."""
        specs = await self._specs()
        versions = [
            Version(
                name=specs.current_name,
                current=True,
                detail=f"image {image_of(specs.current)}, spec version {specs.index}",
            )
        ]
        if specs.previous is not None and specs.previous_name is not None:
            image = image_of(specs.previous)
            versions.append(
                Version(
                    name=specs.previous_name,
                    previous_stable=True,
                    detail=f"image {image}, Swarm's previous spec",
                    aliases=("previous", image),
                )
            )
        return versions

    async def plan(self, target: str) -> Plan:
        """Describe Swarm's rollback to the previous spec, changing nothing."""
        specs = await self._specs()
        previous = self._resolve(specs, target)
        self._refuse_busy(specs)
        settings = self._settings
        config = previous.get("RollbackConfig") or specs.current.get("RollbackConfig") or {}
        wanted = specs.replicas
        tasks = "all tasks (global service)" if wanted is None else f"{wanted} task(s)"
        steps = [
            f"Call POST /services/{specs.name}/update?version={specs.index}&rollback=previous: "
            f"Swarm puts back its previous spec, image {image_of(previous)} (it runs "
            f"{image_of(specs.current)} now), with that spec's env, ports, command and mounts.",
            f"Swarm replaces {tasks} as its rollback config says (parallelism "
            f"{config.get('Parallelism', 1)}, order {config.get('Order', 'stop-first')}, on "
            f"failure: {config.get('FailureAction', 'pause')}).",
            f"Watch UpdateStatus and the tasks every {settings.poll_interval_seconds:g} s for up "
            f"to {settings.update_timeout_seconds:g} s until rollback_completed with every task "
            "running the target image; stop on rollback_paused.",
        ]
        warnings = [
            f"Swarm's previous spec will then be today's ({specs.current_name}): a later "
            f"`docker service rollback {specs.name}` brings {specs.current_name} back."
        ]
        if specs.update_state.endswith("paused"):
            warnings.append(f"The last update is {specs.update_text()}; the rollback replaces it.")
        return Plan(steps=steps, warnings=warnings)

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Ask Swarm to roll back to the previous spec and wait until its tasks run it."""
        started = time.monotonic()
        specs = await self._specs()
        previous = self._resolve(specs, target)
        self._refuse_busy(specs)
        image = image_of(previous)
        await say(
            progress,
            f"Read `{specs.name}` at spec version {specs.index} (image "
            f"{image_of(specs.current)}); asking Swarm to roll back to {image}…",
        )
        await self._send_rollback(specs, image)
        await say(progress, f"Swarm is rolling `{specs.name}` back to {image}; watching its tasks…")
        done, tasks = await self._wait(specs, image, progress)
        log.info("swarm.rollback", target=image, seconds=round(time.monotonic() - started, 2))
        return Outcome(
            summary=(
                f"`{done.name}` now runs {image}: {tasks.running_on(image)} task(s) running, "
                f"Swarm says {done.update_text()}."
            )
        )

    async def describe_state(self) -> str:
        """Say which image the service is set to, what its tasks run and its last update."""
        specs = await self._specs()
        return state_text(specs, Tasks(await self._api.tasks()))

    # -- Preflight, Describe and Freeze -----------------------------------------------------

    async def preflight(self, target: str) -> PreflightReport:
        """Check that the previous spec can run and say what changes, changing nothing."""
        checks = [manager_check(await self._api.info())]
        specs = await self._specs()
        previous = self._resolve(specs, target)
        image = image_of(previous)
        checks.append(idle_check(specs))
        checks.append(await image_check(self._api, image, self._settings.api_timeout_seconds))
        return PreflightReport(
            current=await identity(self._api, image_of(specs.current)),
            target=await identity(self._api, image),
            checks=checks,
            changes=changes(specs.current, previous),
        )

    async def identity_now(self) -> Identity:
        """Return the image the service's spec runs now, with its digest."""
        specs = await self._specs()
        return await identity(self._api, image_of(specs.current))

    async def unfreeze(self, record: FreezeRecord) -> str:
        """Nothing was changed, so nothing is put back."""
        return "Nothing to restore: the freeze was watch only (Swarm has no setting to undo)."

    async def aclose(self) -> None:
        """Close the engine client."""
        await self._api.aclose()

    # -- helpers ----------------------------------------------------------------------------

    async def _specs(self) -> Specs:
        return Specs(await self._api.service())

    def _resolve(self, specs: Specs, target: str) -> Json:
        """Return the previous spec when `target` names it; refuse any other target."""
        name = specs.name
        if specs.previous is None:
            raise Refused(
                f"Swarm keeps no previous spec of `{name}` (it was never updated): there is "
                "nothing to roll back to."
            )
        if specs.means_previous(target):
            return specs.previous
        if target in {specs.current_name, image_of(specs.current)}:
            raise Refused(f"`{name}` already runs {image_of(specs.current)}.")
        raise NotFound(
            f"Swarm keeps only the spec before the current one: `{name}` can go back to "
            f"{specs.previous_name} ({image_of(specs.previous)}) only, not `{target}`."
        )

    def _refuse_busy(self, specs: Specs) -> None:
        """Refuse while Swarm carries out an update or rollback: a second one replaces it."""
        if specs.update_state in BUSY_STATES:
            raise Conflicting(
                f"Swarm is carrying out an update of `{specs.name}` now "
                f"({specs.update_text()}); rolling back would replace it half-way. Wait until "
                "it completes or pauses, then ask again.",
                target_state=specs.update_text(),
            )

    async def _send_rollback(self, specs: Specs, image: str) -> None:
        """Send the rollback once; after a lost answer, ask Swarm whether it was applied."""
        try:
            await self._api.rollback(specs.index)
        except (TimedOut, Transient) as exc:
            try:
                now = await self._specs()
            except ProviderError as again:
                raise type(exc)(
                    f"{exc.message} It may or may not have been applied.",
                    target_state=f"unknown ({again.message})",
                ) from exc
            if now.index > specs.index and now.update_state.startswith("rollback"):
                log.info("swarm.rollback_applied_without_answer", target=image)
                return
            raise type(exc)(
                f"{exc.message} It was not applied.",
                target_state=await self._state_or_unknown(),
            ) from exc
        except ProviderError as exc:
            exc.target_state = exc.target_state or await self._state_or_unknown()
            raise

    async def _wait(self, before: Specs, image: str, progress: Progress) -> tuple[Specs, Tasks]:
        """Poll until Swarm's rollback completes and every task runs `image`."""
        settings = self._settings
        deadline = time.monotonic() + settings.update_timeout_seconds
        reported = ""
        while True:
            try:
                specs, tasks = await self._specs(), Tasks(await self._api.tasks())
            except ProviderError as exc:
                raise RollbackFailed(
                    f"Swarm was asked to roll back to {image}, but rollbot lost sight of the "
                    f"service: {exc.message}",
                    target_state=await self._state_or_unknown(),
                ) from exc
            state = state_text(specs, tasks)
            if image_of(specs.current) != image or not specs.update_state.startswith("rollback"):
                raise RollbackFailed(
                    "Another update of the service replaced this rollback before it completed.",
                    target_state=state,
                )
            running, wanted = tasks.running_on(image), specs.replicas
            line = f"Tasks on {image}: {running} running (all tasks: {tasks.states()})"
            if line != reported:
                reported = line
                await say(progress, line)
            if specs.update_state == "rollback_paused":
                raise RollbackFailed(self._paused(specs, tasks, image), target_state=state)
            desired = len(tasks.desired_running())
            if (
                specs.update_state == "rollback_completed"
                and running == desired
                and (running == wanted if wanted is not None else running > 0)
            ):
                return specs, tasks
            if time.monotonic() >= deadline:
                failures = "; ".join(tasks.failures(image))
                raise TimedOut(
                    f"Swarm's rollback to {image} did not complete within "
                    f"{settings.update_timeout_seconds:g} s"
                    + (f" (failing tasks: {failures})." if failures else "."),
                    target_state=state,
                )
            await asyncio.sleep(settings.poll_interval_seconds)

    def _paused(self, specs: Specs, tasks: Tasks, image: str) -> str:
        """Say why Swarm paused the rollback and what to do about it."""
        failures = tasks.failures(image)
        why = f" Failing tasks: {'; '.join(failures)}." if failures else ""
        return (
            f"Swarm paused the rollback of `{specs.name}` to {image}: {specs.update_message}."
            f"{why} The service stays set to {image} with {tasks.running_on(image)} task(s) "
            f"running it. Make the image runnable on the nodes (push or pull it), then run "
            f"`docker service update --force {specs.name}`, or roll forward to a working image."
        )

    async def _state_or_unknown(self) -> str:
        return await state_or_unknown(self.describe_state)
