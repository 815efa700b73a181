"""Docker Compose provider: recreate a compose service's containers on an earlier tag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Self

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from providers.base import (
    NotFound,
    Outcome,
    Plan,
    Progress,
    Refused,
    Version,
    say,
    state_or_unknown,
)
from providers.capabilities import FreezeRecord, Identity, PreflightReport
from providers.compose_containers import (
    Json,
    container_name,
    is_running,
    old_name,
    status_text,
    temp_name,
)
from providers.compose_engine import ComposeEngine, LocalTag
from providers.compose_files import write_pin
from providers.compose_freeze import freeze_env, freeze_override, unfreeze_file
from providers.compose_preflight import ComposePreflight
from providers.compose_swaps import ContainerSwaps, stop_timeout
from providers.compose_up import up_warning
from providers.images import ImageRef

log = structlog.get_logger(__name__)


class DockerComposeSettings(BaseModel):
    """Settings of a `docker_compose` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["docker_compose"]
    project: str = Field(description="Compose project name (label com.docker.compose.project).")
    service: str = Field(description="Compose service name (label com.docker.compose.service).")
    docker_host: str | None = Field(
        default=None, description="Docker Engine URL; default: DOCKER_HOST or the local socket."
    )
    pull: bool = Field(
        default=False, description="Pull a missing target tag from the image's registry."
    )
    compose_files: list[Path] | None = Field(
        default=None,
        description="Compose files of the project, to check the service's `image:`; default: "
        "those its containers' labels name (com.docker.compose.project.config_files).",
    )
    docker_config: Path | None = Field(
        default=None,
        description="Folder of the Docker config.json whose registry credentials pulls use; "
        "default: DOCKER_CONFIG or ~/.docker.",
    )
    pin_env_file: Path | None = Field(
        default=None, description="Env file the compose file reads the image tag from."
    )
    pin_variable: str | None = Field(
        default=None, description="Variable in pin_env_file that holds the tag, e.g. BACKEND_TAG."
    )
    freeze_file: Path | None = Field(
        default=None,
        description="Compose override file the team's `docker compose -f ... -f` reads (or "
        "compose.override.yaml, read by default) where a freeze pins the service's image; "
        "default: a freeze sets pin_variable in pin_env_file.",
    )
    stop_timeout_seconds: int | None = Field(
        default=None, ge=0, description="Stop timeout; default: the container's own StopTimeout."
    )
    healthy_timeout_seconds: float = Field(
        default=60, gt=0, description="How long a new container may take to run and be healthy."
    )
    settle_seconds: float = Field(
        default=2,
        ge=0,
        description="How long a new container without a HEALTHCHECK must keep running to count.",
    )
    api_timeout_seconds: float = Field(
        default=30, gt=0, description="Deadline of one Docker Engine API call (stop waits longer)."
    )
    pull_timeout_seconds: float = Field(
        default=600, gt=0, description="Deadline for pulling a missing target tag."
    )

    @model_validator(mode="after")
    def _pin_is_complete(self) -> Self:
        """Refuse a pin file without its variable (or the reverse) at start-up."""
        if (self.pin_env_file is None) != (self.pin_variable is None):
            raise ValueError("pin_env_file and pin_variable must be set together")
        return self


class DockerComposeProvider:
    """Roll a compose service back by recreating its containers on an earlier image tag."""

    def __init__(self, settings: DockerComposeSettings) -> None:
        self._settings = settings
        self._engine = ComposeEngine(settings)
        self._swaps = ContainerSwaps(self._engine, settings, self._state_or_unknown)
        self._preflight = ComposePreflight(self._engine, settings, self._require_pullable)

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the tag the service's first container runs."""
        containers = await self._engine.containers()
        return (await self._engine.image_ref(containers[0])).tag

    async def list_versions(self) -> list[Version]:
        """Return the repository's local tags, newest first, current and previous marked."""
        containers = await self._engine.containers()
        current = await self._engine.image_ref(containers[0])
        tags = await self._engine.local_tags(current.repository)
        current_created = await self._engine.image_created(containers[0]["Image"], tags)
        previous = _previous_stable(tags, current.tag, current_created)
        return [
            Version(
                name=t.tag,
                created_at=datetime.fromtimestamp(t.created, UTC),
                current=t.tag == current.tag,
                previous_stable=previous is not None and t.tag == previous.tag,
                detail=f"image {_short_image_id(t.image_id)}",
            )
            for t in tags
        ]

    async def plan(self, target: str) -> Plan:
        """Describe the recreation of each container on `target`, changing nothing."""
        containers = await self._engine.containers()
        current = await self._engine.image_ref(containers[0])
        target_ref = current.with_tag(target)
        steps: list[str] = []
        warnings: list[str] = []
        if await self._engine.find_image(str(target_ref)) is None:
            await self._require_pullable(target_ref)
            steps.append(f"Pull {target_ref} from its registry (it is not on this host yet).")
        to_replace = await self._needing_replacement(containers, target_ref)
        for container in to_replace:
            steps.extend(await self._container_steps(container, target_ref))
        if self._pinned:
            steps.append(self._pin_step(target))
        else:
            warnings.append(await self._up_warning(containers[0], target_ref, current))
        return Plan(steps=steps, warnings=warnings)

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Recreate each container of the service on `target`, restoring the old on failure."""
        started = time.monotonic()
        containers = await self._engine.containers()
        current = await self._engine.image_ref(containers[0])
        target_ref = current.with_tag(target)
        image = await self._ensure_image(target_ref, progress)
        to_replace = await self._needing_replacement(containers, target_ref)
        done: list[str] = []
        for container in to_replace:
            await self._swaps.replace(container, target_ref, image["Id"], progress, done)
            done.append(container_name(container))
        notes = await self._pin(target, progress)
        warning = await self._up_warning(containers[0], target_ref, current)
        await say(progress, warning)
        notes.append(warning)
        summary = (
            f"{self._settings.service} now runs {target_ref} "
            f"({len(done)} container{_plural(len(done))} recreated: {', '.join(done)})"
        )
        log.info(
            "docker_compose.rollback",
            target=str(target_ref),
            seconds=round(time.monotonic() - started, 2),
        )
        return Outcome(summary=summary, notes=notes)

    async def describe_state(self) -> str:
        """Say what the service's containers run now, asked from the engine."""
        containers = await self._engine.containers()
        refs = [str(await self._engine.image_ref(c)) for c in containers]
        states = ", ".join(f"{container_name(c)} {status_text(c)}" for c in containers)
        count = f"{len(containers)} container{_plural(len(containers))}"
        if len(set(refs)) == 1:
            verb = "running" if all(is_running(c) for c in containers) else "on"
            return f"{self._settings.service}: {count} {verb} {refs[0]} ({states})"
        mixed = ", ".join(
            f"{container_name(c)} {status_text(c)} on {r}"
            for c, r in zip(containers, refs, strict=True)
        )
        return f"{self._settings.service}: {count} on different images ({mixed})"

    async def preflight(self, target: str) -> PreflightReport:
        """Check that `target` can run and say exactly what changes, changing nothing."""
        return await self._preflight.preflight(target)

    async def identity_now(self) -> Identity:
        """Return the exact image each container runs now, asked from the engine."""
        return await self._preflight.identity_now()

    async def reconcile(self) -> list[str]:
        """Finish or undo container swaps a crash cut short, so the service is not left down."""
        return await self._swaps.reconcile()

    async def freeze(self, bad: str, good: str) -> FreezeRecord:
        """Pin `good` in the override file (or the pin env file) a later `up` reads."""
        settings = self._settings
        if settings.freeze_file is not None:
            containers = await self._engine.containers()
            image = str((await self._engine.image_ref(containers[0])).with_tag(good))
            record = await asyncio.to_thread(
                freeze_override, settings.freeze_file, settings.service, image, bad, good
            )
        elif settings.pin_env_file is not None and settings.pin_variable is not None:
            record = await asyncio.to_thread(
                freeze_env,
                settings.pin_env_file,
                settings.pin_variable,
                settings.service,
                bad,
                good,
            )
        else:
            record = FreezeRecord(
                action="watch only: no freeze_file or pin_env_file is configured, so nothing "
                f"keeps a `docker compose up` from bringing {bad} back"
            )
        log.info("docker_compose.freeze", action=record.action)
        return record

    async def unfreeze(self, record: FreezeRecord) -> str:
        """Put the file back exactly as the freeze found it, unless it changed since."""
        said = await asyncio.to_thread(unfreeze_file, record, self._settings.service)
        log.info("docker_compose.unfreeze", result=said)
        return said

    async def aclose(self) -> None:
        """Close the Docker Engine client."""
        await self._engine.aclose()

    async def _state_or_unknown(self) -> str:
        """Describe the state for an error message without raising a second error."""
        return await state_or_unknown(self.describe_state)

    # -- images -----------------------------------------------------------------------------

    async def _require_pullable(self, target: ImageRef) -> None:
        """Raise NotFound naming the local tags when a missing tag will not be pulled."""
        if self._settings.pull:
            return
        available = ", ".join(t.tag for t in await self._engine.local_tags(target.repository))
        raise NotFound(
            f"Tag `{target.tag}` of {target.repository} not found on this host "
            f"(available: {available or 'none'}); pulling is off for this target."
        )

    async def _ensure_image(self, target: ImageRef, progress: Progress) -> Json:
        """Return the target image, pulling it first when allowed; change nothing else."""
        image = await self._engine.find_image(str(target))
        if image is not None:
            return image
        await self._require_pullable(target)
        await say(progress, f"Pulling {target} (not on this host yet)…")
        await self._engine.pull(target)
        image = await self._engine.find_image(str(target))
        if image is None:
            raise NotFound(f"Pulling {target} finished but the image is still not on this host.")
        await say(progress, f"Pulled {target} (image {_short_image_id(image['Id'])}).")
        return image

    async def _needing_replacement(self, containers: list[Json], target: ImageRef) -> list[Json]:
        """Return the containers not on `target` yet; refuse when none is left."""
        pending = [c for c in containers if await self._engine.image_ref(c) != target]
        if not pending:
            raise Refused(f"{self._settings.service} already runs {target}; nothing to roll back.")
        return pending

    # -- plan -------------------------------------------------------------------------------

    async def _container_steps(self, container: Json, target: ImageRef) -> list[str]:
        """Describe how one container will be recreated."""
        name = container_name(container)
        old = await self._engine.image_ref(container)
        host = container["HostConfig"]
        restart = (host.get("RestartPolicy") or {}).get("Name") or "no"
        stop = stop_timeout(self._settings, container)
        return [
            f"Create `{temp_name(container)}` from {target} with the config of `{name}` "
            f"(env, labels, command, mounts, network {host.get('NetworkMode') or 'default'}, "
            f"restart policy {restart}); replaces {old}.",
            f"Stop `{name}` ({old}), allowing {stop} s before it is killed.",
            f"Rename `{name}` to `{old_name(container)}`, give the new container the name "
            f"`{name}` and start it.",
            f"Wait up to {self._settings.healthy_timeout_seconds:g} s for it to run"
            " (and pass its HEALTHCHECK, if the image has one); if it does not, remove it and "
            f"start `{name}` on {old} again.",
            f"Remove the old container `{old_name(container)}`.",
        ]

    @property
    def _pinned(self) -> bool:
        return self._settings.pin_env_file is not None and self._settings.pin_variable is not None

    def _pin_step(self, target: str) -> str:
        return (
            f"Set {self._settings.pin_variable}={target} in {self._settings.pin_env_file} so a "
            "later `docker compose up` keeps this version."
        )

    async def _up_warning(self, first: Json, target: ImageRef, replaced: ImageRef) -> str:
        """Say what a later `docker compose up -d` will run, read from the compose file."""
        settings = self._settings
        return await asyncio.to_thread(
            up_warning,
            service=settings.service,
            configured_files=settings.compose_files,
            labels=first["Config"].get("Labels") or {},
            pin_env_file=settings.pin_env_file,
            target=target,
            replaced=replaced,
        )

    # -- pin --------------------------------------------------------------------------------

    async def _pin(self, target: str, progress: Progress) -> list[str]:
        """Write the target tag into the pin file, when one is configured."""
        settings = self._settings
        if settings.pin_env_file is None or settings.pin_variable is None:
            return []
        try:
            await asyncio.to_thread(write_pin, settings.pin_env_file, settings.pin_variable, target)
        except OSError as exc:
            note = f"Could not update {settings.pin_env_file}: {exc}. Pin {target} by hand."
        else:
            note = f"Pinned {settings.pin_variable}={target} in {settings.pin_env_file}."
        await say(progress, note)
        return [note]


def _previous_stable(tags: Iterable[LocalTag], current: str, created: int) -> LocalTag | None:
    """Return the newest tag older than the running one."""
    older = [t for t in tags if t.tag != current and t.created < created]
    return max(older, key=lambda t: t.created, default=None)


def _short_image_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _plural(count: int) -> str:
    return "" if count == 1 else "s"
