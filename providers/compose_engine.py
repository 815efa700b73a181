"""The Docker Engine as a compose target sees it: calls under deadlines, retried reads, lookups."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from providers.base import NotFound, ProviderError, Refused, TimedOut, Transient
from providers.compose_containers import (
    Json,
    container_name,
    container_order,
    is_service_container,
)
from providers.compose_labels import PROJECT_LABEL, SERVICE_LABEL
from providers.docker_errors import lost_connection, registry_error, translate
from providers.images import ImageRef
from providers.registry_auth import DOCKER_HUB, credentials_for, docker_config_dir, registry_of
from providers.retry import retrying

if TYPE_CHECKING:
    from providers.docker_compose import DockerComposeSettings

T = TypeVar("T")


@dataclass(frozen=True)
class LocalTag:
    """A tag of the repository present on the engine's host."""

    tag: str
    image_id: str
    created: int


class ComposeEngine:
    """The one engine client of a compose target, and the calls made through it."""

    def __init__(self, settings: DockerComposeSettings) -> None:
        self._settings = settings
        self._docker: aiodocker.Docker | None = None

    def client(self) -> aiodocker.Docker:
        """Return the one engine client, created on first use (it needs a running loop)."""
        if self._docker is None:
            try:
                self._docker = aiodocker.Docker(url=self._settings.docker_host)
            except (ValueError, DockerError) as exc:
                raise Refused(
                    f"Cannot use Docker host {self._settings.docker_host}: {exc}"
                ) from exc
        return self._docker

    async def aclose(self) -> None:
        """Close the engine client."""
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    async def call(self, what: str, call: Awaitable[T], deadline: float | None = None) -> T:
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

    async def read(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run a read under `self.call`, retried on transient failures and timeouts (reads only)."""

        async def attempt() -> T:
            try:
                return await self.call(what, call())
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

    async def inspect(self, container_id: str) -> Json:
        """Return a container's inspect document."""
        handle = self.client().containers.container(container_id)
        return await self.read(f"inspecting container {container_id[:12]}", handle.show)

    async def labelled(self) -> list[Json]:
        """Inspect every container labelled with the service, leftovers of a swap included."""
        settings = self._settings
        labels = [f"{PROJECT_LABEL}={settings.project}", f"{SERVICE_LABEL}={settings.service}"]
        containers = self.client().containers
        filters = json.dumps({"label": labels})
        found = await self.read(
            f"listing the containers of {settings.project}/{settings.service}",
            lambda: containers.list(all=True, filters=filters),
        )
        return [await self.inspect(c.id) for c in found]

    async def containers(self) -> list[Json]:
        """Inspect the service's containers, ordered by compose's container number."""
        settings = self._settings
        service = [c for c in await self.labelled() if is_service_container(c)]
        if not service:
            raise NotFound(
                f"No container of service `{settings.service}` in compose project "
                f"`{settings.project}` on this Docker Engine."
            )
        return sorted(service, key=container_order)

    async def remove(self, container_id: str) -> None:
        """Remove a container (running or not), keeping its volumes."""
        handle = self.client().containers.container(container_id)
        await self.call(f"removing container {container_id[:12]}", handle.delete(force=True))

    async def find_image(self, ref: str) -> Json | None:
        """Inspect an image, or return None when the host does not have it."""
        try:
            images = self.client().images
            return await self.read(f"inspecting image {ref}", lambda: images.inspect(ref))
        except NotFound:
            return None

    async def image_ref(self, container: Json) -> ImageRef:
        """Return the tagged image a container runs (its config names it, or the image does)."""
        configured = str(container["Config"]["Image"])
        if not configured.startswith("sha256:") and "@" not in configured:
            return ImageRef.parse(configured)
        image = await self.find_image(container["Image"])
        tags = (image or {}).get("RepoTags") or []
        if not tags:
            raise NotFound(
                f"{container_name(container)} runs an untagged image ({configured[:19]})."
            )
        return ImageRef.parse(tags[0])

    async def local_tags(self, repository: str) -> list[LocalTag]:
        """Return the repository's tags on this host, newest image first."""
        client = self.client()
        images = await self.read(
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

    async def image_created(self, image_id: str, tags: list[LocalTag]) -> int:
        """Return when the running image was created (its tag may have moved since)."""
        for tag in tags:
            if tag.image_id == image_id:
                return tag.created
        image = await self.find_image(image_id)
        created = str((image or {}).get("Created") or "")
        if not created:
            return 0
        return int(datetime.fromisoformat(created[:19]).replace(tzinfo=UTC).timestamp())

    async def pull(self, target: ImageRef) -> None:
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
            await self.call(
                f"pulling {target}",
                self.client().images.pull(
                    repository, tag=target.tag, auth=auth.fields if auth else None
                ),
                deadline=settings.pull_timeout_seconds,
            )
        except ProviderError as exc:
            raise registry_error(exc, registry, auth.source if auth else None) from exc


class _ReadTimedOut(Transient):
    """A read that got no answer in time: worth another try, unlike a write."""
