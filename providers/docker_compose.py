"""Docker Compose provider: recreate a compose service's containers on an earlier tag."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Self, TypeVar

import aiodocker
import aiohttp
import structlog
from aiodocker.exceptions import DockerError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from providers.base import (
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
from providers.compose_containers import (
    OLD_MARK,
    TEMP_NAME,
    Json,
    container_name,
    container_order,
    create_body,
    endpoints_of,
    is_running,
    is_service_container,
    old_name,
    raise_if_failed,
    status_text,
    temp_name,
)
from providers.compose_files import write_pin
from providers.compose_labels import PROJECT_LABEL, SERVICE_LABEL, recreated_labels
from providers.compose_up import up_warning
from providers.docker_errors import lost_connection, registry_error, translate
from providers.images import ImageRef
from providers.registry_auth import DOCKER_HUB, credentials_for, docker_config_dir, registry_of
from providers.retry import retrying

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_STOP_TIMEOUT = 10
POLL_SECONDS = 0.25
LOG_TAIL_LINES = 5
SIGKILL_EXIT = 137


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


@dataclass(frozen=True)
class LocalTag:
    """A tag of the repository present on the engine's host."""

    tag: str
    image_id: str
    created: int


class DockerComposeProvider:
    """Roll a compose service back by recreating its containers on an earlier image tag."""

    def __init__(self, settings: DockerComposeSettings) -> None:
        self._settings = settings
        self._docker: aiodocker.Docker | None = None

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the tag the service's first container runs."""
        containers = await self._containers()
        return (await self._image_ref(containers[0])).tag

    async def list_versions(self) -> list[Version]:
        """Return the repository's local tags, newest first, current and previous marked."""
        containers = await self._containers()
        current = await self._image_ref(containers[0])
        tags = await self._local_tags(current.repository)
        current_created = await self._image_created(containers[0]["Image"], tags)
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
        containers = await self._containers()
        current = await self._image_ref(containers[0])
        target_ref = current.with_tag(target)
        steps: list[str] = []
        warnings: list[str] = []
        if await self._find_image(str(target_ref)) is None:
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
        containers = await self._containers()
        current = await self._image_ref(containers[0])
        target_ref = current.with_tag(target)
        image = await self._ensure_image(target_ref, progress)
        to_replace = await self._needing_replacement(containers, target_ref)
        done: list[str] = []
        for container in to_replace:
            await self._replace(container, target_ref, image["Id"], progress, done)
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
            "docker_compose.rollback", target=str(target_ref), seconds=round(_since(started), 2)
        )
        return Outcome(summary=summary, notes=notes)

    async def describe_state(self) -> str:
        """Say what the service's containers run now, asked from the engine."""
        containers = await self._containers()
        refs = [str(await self._image_ref(c)) for c in containers]
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

    async def reconcile(self) -> list[str]:
        """Finish or undo container swaps a crash cut short, so the service is not left down.

        A renamed old container whose successor runs under the service's name is the end
        of a finished swap: it is removed. Otherwise the successor never ran: it is removed
        and the old container gets its name back and runs again. A temporary container
        left before the old one was renamed is removed, and the old one started if stopped.
        """
        containers = await self._labelled()
        by_name = {container_name(c): c for c in containers}
        notes: list[str] = []
        for old in [c for c in containers if OLD_MARK in container_name(c)]:
            name = container_name(old).split(OLD_MARK, 1)[0]
            temp = f"{old['Id'][:12]}_{name}"
            new = by_name.get(name) or by_name.get(temp)
            by_name.pop(temp, None)
            if new is not None and container_name(new) == name and is_running(new):
                await self._remove(old["Id"])
                notes.append(f"`{name}` runs its new container; removed the old one left behind.")
                continue
            swap = _Swap(name, old["Id"], new["Id"] if new else "", True, old_renamed=True)
            await self._put_back(swap, old)
            notes.append(f"Put the old `{name}` back: a swap was cut short before the new one ran.")
        for leftover_name, leftover in by_name.items():
            if not TEMP_NAME.match(leftover_name):
                continue
            await self._remove(leftover["Id"])
            name = TEMP_NAME.sub("", leftover_name, count=1)
            service = by_name.get(name)
            if service is not None and not is_running(service):
                swap = _Swap(name, service["Id"], "", True)
                await self._put_back(swap, service)
                notes.append(f"Started `{name}` again: a swap was cut short after stopping it.")
            else:
                notes.append(f"Removed `{leftover_name}`, left by a swap cut short.")
        return notes

    async def aclose(self) -> None:
        """Close the Docker Engine client."""
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    # -- engine calls -----------------------------------------------------------------------

    def _client(self) -> aiodocker.Docker:
        """Return the one engine client, created on first use (it needs a running loop)."""
        if self._docker is None:
            try:
                self._docker = aiodocker.Docker(url=self._settings.docker_host)
            except (ValueError, DockerError) as exc:
                raise Refused(
                    f"Cannot use Docker host {self._settings.docker_host}: {exc}"
                ) from exc
        return self._docker

    async def _call(self, what: str, call: Awaitable[T], deadline: float | None = None) -> T:
        """Await one engine call under a deadline (seconds), translating its errors."""
        seconds = deadline if deadline is not None else self._settings.api_timeout_seconds
        try:
            async with asyncio.timeout(seconds):
                return await call
        except DockerError as exc:
            raise translate(exc, what) from exc
        except TimeoutError as exc:
            raise TimedOut(
                f"The Docker Engine gave no answer in time {what} ({seconds:g} s)."
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise lost_connection(exc, what) from exc

    async def _read(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run a read under `_call`, retried on transient failures and timeouts (reads only)."""

        async def attempt() -> T:
            try:
                return await self._call(what, call())
            except TimedOut as exc:
                raise _ReadTimedOut(exc.message) from exc

        try:
            return await retrying(
                attempt, attempts=3, base_delay=0.2, deadline_seconds=self._read_budget
            )
        except _ReadTimedOut as exc:
            raise TimedOut(exc.message) from exc

    @property
    def _read_budget(self) -> float:
        return self._settings.api_timeout_seconds * 3 + 5

    async def _inspect(self, container_id: str) -> Json:
        """Return a container's inspect document."""
        handle = self._client().containers.container(container_id)
        return await self._read(f"inspecting container {container_id[:12]}", handle.show)

    async def _labelled(self) -> list[Json]:
        """Inspect every container labelled with the service, leftovers of a swap included."""
        settings = self._settings
        labels = [f"{PROJECT_LABEL}={settings.project}", f"{SERVICE_LABEL}={settings.service}"]
        containers = self._client().containers
        filters = json.dumps({"label": labels})
        found = await self._read(
            f"listing the containers of {settings.project}/{settings.service}",
            lambda: containers.list(all=True, filters=filters),
        )
        return [await self._inspect(c.id) for c in found]

    async def _containers(self) -> list[Json]:
        """Inspect the service's containers, ordered by compose's container number."""
        settings = self._settings
        service = [c for c in await self._labelled() if is_service_container(c)]
        if not service:
            raise NotFound(
                f"No container of service `{settings.service}` in compose project "
                f"`{settings.project}` on this Docker Engine."
            )
        return sorted(service, key=container_order)

    async def _find_image(self, ref: str) -> Json | None:
        """Inspect an image, or return None when the host does not have it."""
        try:
            images = self._client().images
            return await self._read(f"inspecting image {ref}", lambda: images.inspect(ref))
        except NotFound:
            return None

    async def _image_ref(self, container: Json) -> ImageRef:
        """Return the tagged image a container runs (its config names it, or the image does)."""
        configured = str(container["Config"]["Image"])
        if not configured.startswith("sha256:") and "@" not in configured:
            return ImageRef.parse(configured)
        image = await self._find_image(container["Image"])
        tags = (image or {}).get("RepoTags") or []
        if not tags:
            raise NotFound(
                f"{container_name(container)} runs an untagged image ({configured[:19]})."
            )
        return ImageRef.parse(tags[0])

    async def _local_tags(self, repository: str) -> list[LocalTag]:
        """Return the repository's tags on this host, newest image first."""
        client = self._client()
        images = await self._read(
            f"listing the local tags of {repository}",
            lambda: client.images.list(filters={"reference": [repository]}),
        )
        tags = [
            LocalTag(ImageRef.parse(ref).tag, image["Id"], int(image.get("Created", 0)))
            for image in images
            for ref in image.get("RepoTags") or []
            if ImageRef.parse(ref).repository == repository
        ]
        return sorted(tags, key=lambda t: (t.created, t.tag), reverse=True)

    async def _image_created(self, image_id: str, tags: list[LocalTag]) -> int:
        """Return when the running image was created (its tag may have moved since)."""
        for tag in tags:
            if tag.image_id == image_id:
                return tag.created
        image = await self._find_image(image_id)
        created = str((image or {}).get("Created") or "")
        if not created:
            return 0
        return int(datetime.fromisoformat(created[:19]).replace(tzinfo=UTC).timestamp())

    async def _require_pullable(self, target: ImageRef) -> None:
        """Raise NotFound naming the local tags when a missing tag will not be pulled."""
        if self._settings.pull:
            return
        available = ", ".join(t.tag for t in await self._local_tags(target.repository))
        raise NotFound(
            f"Tag `{target.tag}` of {target.repository} not found on this host "
            f"(available: {available or 'none'}); pulling is off for this target."
        )

    async def _ensure_image(self, target: ImageRef, progress: Progress) -> Json:
        """Return the target image, pulling it first when allowed; change nothing else."""
        image = await self._find_image(str(target))
        if image is not None:
            return image
        await self._require_pullable(target)
        await say(progress, f"Pulling {target} (not on this host yet)…")
        await self._pull(target)
        image = await self._find_image(str(target))
        if image is None:
            raise NotFound(f"Pulling {target} finished but the image is still not on this host.")
        await say(progress, f"Pulled {target} (image {_short_image_id(image['Id'])}).")
        return image

    async def _pull(self, target: ImageRef) -> None:
        """Pull an image, sending the Docker config's credentials for its registry, if any."""
        settings = self._settings
        config_dir = docker_config_dir(settings.docker_config)
        auth = await credentials_for(target.repository, config_dir, settings.api_timeout_seconds)
        registry = registry_of(target.repository)
        repository = target.repository
        if auth is not None and registry == DOCKER_HUB:
            # aiodocker sends credentials only with a registry host in the name.
            repository = f"{DOCKER_HUB}/{repository}"
        try:
            await self._call(
                f"pulling {target}",
                self._client().images.pull(
                    repository, tag=target.tag, auth=auth.fields if auth else None
                ),
                deadline=settings.pull_timeout_seconds,
            )
        except ProviderError as exc:
            raise registry_error(exc, registry, auth.source if auth else None) from exc

    async def _needing_replacement(self, containers: list[Json], target: ImageRef) -> list[Json]:
        """Return the containers not on `target` yet; refuse when none is left."""
        pending = [c for c in containers if await self._image_ref(c) != target]
        if not pending:
            raise Refused(f"{self._settings.service} already runs {target}; nothing to roll back.")
        return pending

    # -- plan -------------------------------------------------------------------------------

    async def _container_steps(self, container: Json, target: ImageRef) -> list[str]:
        """Describe how one container will be recreated."""
        name = container_name(container)
        old = await self._image_ref(container)
        host = container["HostConfig"]
        restart = (host.get("RestartPolicy") or {}).get("Name") or "no"
        return [
            f"Create `{temp_name(container)}` from {target} with the config of `{name}` "
            f"(env, labels, command, mounts, network {host.get('NetworkMode') or 'default'}, "
            f"restart policy {restart}); replaces {old}.",
            f"Stop `{name}` ({old}), allowing {self._stop_timeout(container)} s before it is "
            "killed.",
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

    # -- rollback ---------------------------------------------------------------------------

    def _stop_timeout(self, container: Json) -> int:
        """Return the stop timeout: configured, else the container's own, else Docker's 10 s."""
        if self._settings.stop_timeout_seconds is not None:
            return self._settings.stop_timeout_seconds
        own = container["Config"].get("StopTimeout")
        return int(own) if own is not None else DEFAULT_STOP_TIMEOUT

    async def _replace(
        self,
        old: Json,
        target: ImageRef,
        target_image_id: str,
        progress: Progress,
        done: list[str],
    ) -> None:
        """Recreate one container on `target`, putting the old one back if the new one fails."""
        name = container_name(old)
        old_ref = await self._image_ref(old)
        old_image = await self._find_image(old["Image"]) or {}
        body = create_body(old, old_image, str(target))
        body["Labels"] = recreated_labels(body.get("Labels") or {}, target_image_id)
        await self._remove_leftover(temp_name(old))
        client = self._client()
        try:
            new = await self._call(
                f"creating {temp_name(old)}",
                client.containers.create(body, name=temp_name(old)),
            )
        except (TimedOut, Transient) as exc:
            # The engine may have created it before the answer was lost: ask, then clean up.
            await self._remove_leftover_quietly(temp_name(old))
            state = await self._state_or_unknown()
            raise type(exc)(
                f"{exc.message} Nothing was swapped: {state}.", target_state=state
            ) from exc
        await say(progress, f"Created `{temp_name(old)}` from {target}.")
        swap = _Swap(name=name, old_id=old["Id"], new_id=new.id, was_running=is_running(old))
        try:
            await self._connect_extra_networks(old, new.id)
            await self._stop_old(old, progress)
            await self._start_new(swap, old, target, progress)
        except ProviderError as exc:
            reason = exc.message.rstrip(".")
        except asyncio.CancelledError:
            # A deadline hit mid-swap: put the old container back before giving up.
            await self._put_back_quietly(swap, old)
            raise
        else:
            await self._remove_replaced(old, progress)
            return
        await self._restore_and_fail(swap, old, old_ref, target, reason, progress, done)

    async def _connect_extra_networks(self, old: Json, new_id: str) -> None:
        """Attach the new container to every network of the old one beyond the first."""
        networks = self._client().networks
        for network, endpoint in endpoints_of(old)[1:]:
            net = await self._read(
                f"finding network {network}", functools.partial(networks.get, network)
            )
            await self._call(
                f"connecting to network {network}",
                net.connect({"Container": new_id, "EndpointConfig": endpoint}),
            )

    async def _stop_old(self, old: Json, progress: Progress) -> None:
        """Stop the old container, saying whether it had to be killed."""
        name = container_name(old)
        if not is_running(old):
            await say(progress, f"`{name}` is not running ({status_text(old)}); nothing to stop.")
            return
        seconds = self._stop_timeout(old)
        started = time.monotonic()
        handle = self._client().containers.container(old["Id"])
        await self._call(
            f"stopping {name}",
            handle.stop(t=seconds),
            deadline=seconds + self._settings.api_timeout_seconds,
        )
        state = (await self._inspect(old["Id"]))["State"]
        if state.get("ExitCode") == SIGKILL_EXIT and _since(started) >= seconds:
            await say(
                progress,
                f"Stopped `{name}`, but it ignored SIGTERM: killed after {seconds} s "
                "(give it an init process or a shorter stop timeout).",
            )
        else:
            await say(progress, f"Stopped `{name}` in {_since(started):.1f} s.")

    async def _start_new(
        self, swap: _Swap, old: Json, target: ImageRef, progress: Progress
    ) -> None:
        """Give the new container the service's name, start it and wait until it is up."""
        client = self._client()
        new = client.containers.container(swap.new_id)
        # Rename while neither runs: the engine fails to rename a host-network container
        # that has just crashed ("sandbox ... not found").
        handle = client.containers.container(swap.old_id)
        await self._call(f"renaming {swap.name}", handle.rename(old_name(old)))
        swap.old_renamed = True
        await self._call(f"renaming the new {swap.name}", new.rename(swap.name))
        await self._call(f"starting the new {swap.name}", new.start())
        await say(progress, f"Started `{swap.name}` on {target}; waiting for it to be up…")
        health = await self._wait_up(swap.new_id)
        await say(progress, f"`{swap.name}` is {health}.")

    async def _wait_up(self, container_id: str) -> str:
        """Wait until a new container runs (and is healthy); raise what went wrong if not."""
        settings = self._settings
        deadline = time.monotonic() + settings.healthy_timeout_seconds
        running_since: float | None = None
        while True:
            state = (await self._inspect(container_id))["State"]
            raise_if_failed(state)
            health = (state.get("Health") or {}).get("Status")
            now = time.monotonic()
            if state.get("Running") and running_since is None:
                running_since = now
            if health == "healthy":
                return "running and healthy"
            settled = running_since is not None and now - running_since >= settings.settle_seconds
            if health is None and settled:
                return "running (the image has no HEALTHCHECK)"
            if now >= deadline:
                waited = f"{settings.healthy_timeout_seconds:g} s"
                raise TimedOut(f"it was not up within {waited} (health: {health or 'none'})")
            await asyncio.sleep(POLL_SECONDS)

    async def _restore_and_fail(
        self,
        swap: _Swap,
        old: Json,
        old_ref: ImageRef,
        target: ImageRef,
        reason: str,
        progress: Progress,
        done: list[str],
    ) -> None:
        """Remove the failed new container, bring the old one back and raise RollbackFailed."""
        logs = await self._log_tail(swap.new_id)
        await say(progress, f"The new `{swap.name}` failed: {reason}. Restoring the old one…")
        message = f"{target} did not come up for `{swap.name}`: {reason}."
        if logs:
            message += "\nLast log lines:\n" + "\n".join(logs)
        try:
            await self._put_back(swap, old)
        except ProviderError as exc:
            state = await self._state_or_unknown()
            raise RollbackFailed(
                f"{message}\nRestoring the old container failed too: {exc.message}",
                target_state=f"{state} (old container `{old_name(old)}` NOT restored)",
            ) from exc
        again = "again" if swap.was_running else "again (stopped, as before)"
        state = f"{self._settings.service} runs {old_ref} {again} (old container restored)"
        if done:
            state += f"; already on {target}: {', '.join(done)}"
        await say(progress, f"Restored `{swap.name}` on {old_ref}.")
        raise RollbackFailed(message, target_state=state)

    async def _put_back(self, swap: _Swap, old: Json) -> None:
        """Remove the new container and give the old one back its name and its run."""
        client = self._client()
        if swap.new_id:
            await self._remove(swap.new_id)
        if swap.old_renamed:
            handle = client.containers.container(swap.old_id)
            await self._call(f"renaming {old_name(old)} back", handle.rename(swap.name))
        if not swap.was_running:
            return
        await self._call(
            f"starting the old {swap.name}", client.containers.container(swap.old_id).start()
        )
        deadline = time.monotonic() + self._settings.healthy_timeout_seconds
        while not (state := (await self._inspect(swap.old_id))["State"]).get("Running"):
            if time.monotonic() >= deadline or state.get("Status") in ("exited", "dead"):
                raise RollbackFailed(f"the old `{swap.name}` did not run again ({state['Status']})")
            await asyncio.sleep(POLL_SECONDS)

    async def _put_back_quietly(self, swap: _Swap, old: Json) -> None:
        """Restore the old container after a cancellation, logging rather than raising."""
        try:
            await self._put_back(swap, old)
        except ProviderError as exc:
            log.error("docker_compose.restore_failed", container=swap.name, error=exc.message)
        else:
            log.warning("docker_compose.restored_after_cancel", container=swap.name)

    async def _log_tail(self, container_id: str) -> list[str]:
        """Return the last few log lines of a container, or none when they cannot be read."""
        handle = self._client().containers.container(container_id)
        try:
            lines = await self._call(
                "reading the new container's logs",
                handle.log(stdout=True, stderr=True, tail=LOG_TAIL_LINES),
            )
        except ProviderError:
            return []
        return [line.rstrip("\n") for line in lines if line.strip()][-LOG_TAIL_LINES:]

    async def _remove_replaced(self, old: Json, progress: Progress) -> None:
        """Remove the replaced container; a failure leaves it stopped, which is said, not raised."""
        try:
            await self._remove(old["Id"])
        except ProviderError as exc:
            await say(
                progress,
                f"Could not remove the old container `{old_name(old)}` ({exc.message}); it is "
                f"stopped and harmless: remove it with `docker rm {old_name(old)}`.",
            )
        else:
            await say(progress, f"Removed the old container `{old_name(old)}`.")

    async def _remove_leftover_quietly(self, name: str) -> None:
        """Remove a container a lost create may have left, logging when that fails too."""
        try:
            await self._remove_leftover(name)
        except ProviderError as exc:
            log.warning("docker_compose.leftover_not_removed", container=name, error=exc.message)

    async def _remove_leftover(self, name: str) -> None:
        """Remove a temporary container an interrupted recreation left under `name`."""
        try:
            await self._remove(name)
        except NotFound:
            return
        log.warning("docker_compose.removed_leftover", container=name)

    async def _remove(self, container_id: str) -> None:
        """Remove a container (running or not), keeping its volumes."""
        handle = self._client().containers.container(container_id)
        await self._call(f"removing container {container_id[:12]}", handle.delete(force=True))

    async def _state_or_unknown(self) -> str:
        """Describe the state for an error message without raising a second error."""
        return await state_or_unknown(self.describe_state)

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


class _ReadTimedOut(Transient):
    """A read that got no answer in time: worth another try, unlike a write."""


@dataclass
class _Swap:
    """Where one container recreation stands, so a failure can be undone exactly."""

    name: str
    old_id: str
    new_id: str
    was_running: bool
    old_renamed: bool = False


def _previous_stable(tags: Iterable[LocalTag], current: str, created: int) -> LocalTag | None:
    """Return the newest tag older than the running one."""
    older = [t for t in tags if t.tag != current and t.created < created]
    return max(older, key=lambda t: t.created, default=None)


def _short_image_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _plural(count: int) -> str:
    return "" if count == 1 else "s"


def _since(started: float) -> float:
    return time.monotonic() - started
