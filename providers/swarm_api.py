"""The Docker Engine as a swarm manager: calls under deadlines, retried reads, one update.

Docker Engine API: `GET /services/{id}` answers the service with `Version.Index`,
`Spec`, `PreviousSpec` and `UpdateStatus`; `POST /services/{id}/update?version=N&
rollback=previous` puts `PreviousSpec` back server-side (the body is ignored but must be a
valid spec); a `version` that is no longer the service's answers HTTP 500 "update out of
sequence"; an engine that is not a manager answers 503 "This node is not a swarm manager".
`GET /tasks?filters={"service":[name]}` lists the service's tasks with `Status.State`,
`Status.Err` and the `Spec.ContainerSpec.Image` each runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from providers.base import Conflicting, NotFound, ProviderError, Refused, TimedOut
from providers.docker_errors import engine_text, lost_connection, translate
from providers.retry import retrying

T = TypeVar("T")
Json = dict[str, Any]

OUT_OF_SEQUENCE = "update out of sequence"
NOT_A_MANAGER = "not a swarm manager"


class SwarmApi:
    """The one engine client of a swarm target, and the calls made through it."""

    def __init__(self, docker_host: str | None, service: str, timeout_seconds: float) -> None:
        self._host = docker_host
        self._service = service
        self._timeout = timeout_seconds
        self._docker: aiodocker.Docker | None = None

    def client(self) -> aiodocker.Docker:
        """Return the engine client, created on first use (it needs a running loop)."""
        if self._docker is None:
            try:
                self._docker = aiodocker.Docker(url=self._host)
            except (ValueError, DockerError) as exc:
                raise Refused(f"Cannot use Docker host {self._host}: {exc}") from exc
        return self._docker

    async def aclose(self) -> None:
        """Close the engine client."""
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    async def call(self, what: str, call: Awaitable[T]) -> T:
        """Await one engine call under the deadline, translating its errors."""
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except DockerError as exc:
            raise self._translate(exc, what) from exc
        except TimeoutError as exc:
            raise TimedOut(
                f"The Docker Engine gave no answer in time {what} ({self._timeout:g} s)."
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise lost_connection(exc, what) from exc

    async def read(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run a read, retried on transient failures and timeouts (reads only)."""
        return await retrying(
            lambda: self.call(what, call()),
            attempts=3,
            base_delay=0.2,
            deadline_seconds=self._timeout * 3 + 5,
            timeouts=True,
        )

    async def service(self) -> Json:
        """Inspect the service; a missing one is NotFound."""
        services = self.client().services
        found = await self.read(
            f"inspecting swarm service `{self._service}`",
            lambda: services.inspect(self._service),
        )
        return dict(found)

    async def tasks(self) -> list[Json]:
        """List the service's tasks, newest first."""
        tasks = self.client().tasks
        found = await self.read(
            f"listing the tasks of swarm service `{self._service}`",
            lambda: tasks.list(filters={"service": [self._service]}),
        )
        return sorted(
            (dict(t) for t in found), key=lambda t: str(t.get("CreatedAt") or ""), reverse=True
        )

    async def info(self) -> Json:
        """Return the engine's `docker info`, which says whether it is a swarm manager."""
        system = self.client().system
        found = await self.read("reading the engine's swarm state", system.info)
        return dict(found)

    async def find_image(self, ref: str) -> Json | None:
        """Inspect an image on this engine's host, or return None when it is not there."""
        images = self.client().images
        try:
            found: Json = await self.read(f"inspecting image {ref}", lambda: images.inspect(ref))
        except NotFound:
            return None
        return found

    async def rollback(self, version: int) -> None:
        """Ask Swarm to put the previous spec back, if the service is still at `version`.

        Sent once and never retried: a request that got no answer may have been applied.
        """
        services = self.client().services
        await self.call(
            f"rolling back swarm service `{self._service}`",
            services.update(self._service, version=str(version), rollback=True),
        )

    def _translate(self, exc: DockerError, what: str) -> ProviderError:
        text = engine_text(exc)
        if OUT_OF_SEQUENCE in text:
            return Conflicting(
                f"Swarm service `{self._service}` changed since rollbot read it (Docker "
                f'answered "{OUT_OF_SEQUENCE}"): nothing was overwritten. Look at what '
                "changed, then ask again."
            )
        if NOT_A_MANAGER in text.lower():
            return Refused(
                f"The Docker Engine at {self._host or 'DOCKER_HOST'} is not a swarm manager "
                f"({text}): point docker_host at a manager node."
            )
        if exc.status == 404 and "service" in text.lower():
            return NotFound(f"No swarm service `{self._service}` on this swarm ({text}).")
        return translate(exc, what)
