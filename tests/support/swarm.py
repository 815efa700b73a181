"""Fixtures for a real single-node swarm: the test engine made a manager, services on host network.

What works on the test engine (`scripts/start-dockerd.sh`: `--iptables=false
--bridge=none`), found by trying it:

- `POST /swarm/init` with `ListenAddr 127.0.0.1:2377`, `AdvertiseAddr 127.0.0.1` works;
  it creates the `ingress` overlay network and `docker_gwbridge`.
- A service on the `host` network runs, and its tasks answer on 127.0.0.1:$PORT: the
  services here use it, each with its own port, like the compose tests' containers.
- A port published through the routing mesh (`-p 18932:8080`) starts its task but never
  answers: the mesh needs iptables. A service without networks gets the default bridge,
  which `--bridge=none` leaves without connectivity. Neither is used here.

Containers of other tests are untouched by swarm mode: the compose tests pass
with the swarm on.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiodocker
import pytest
from aiodocker.exceptions import DockerError

from playground.world import free_port
from providers.docker_swarm import DockerSwarmProvider, DockerSwarmSettings
from tests.support.docker import DemoImages, docker_cli

Json = dict[str, Any]

# Short monitors and grace periods: a test's update takes seconds, not Swarm's default 5 s
# per task plus a 10 s stop of an httpd that ignores SIGTERM.
FAST_UPDATES = {"Parallelism": 1, "Monitor": 1_000_000_000, "FailureAction": "pause"}
MISSING_IMAGE = "127.0.0.1:1/rollbot-test/backend:v0.0.0-missing"


@dataclass
class SwarmService:
    """A service the test created, serving /health on 127.0.0.1:`port` (host network)."""

    name: str
    port: int
    repository: str

    @property
    def url(self) -> str:
        """Return the base URL its task serves on."""
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def swarm_manager(docker_host: str) -> str:
    """Make the test engine a single-node swarm manager (or reuse its swarm); return its node."""
    swarm = json.loads(docker_cli(docker_host, "info", "--format", "{{json .Swarm}}"))
    if swarm.get("LocalNodeState") == "active" and swarm.get("ControlAvailable"):
        return str(swarm["NodeID"])
    if swarm.get("LocalNodeState") not in (None, "", "inactive"):
        pytest.fail(f"The test engine is in a swarm but not its manager: {swarm}")
    # `docker swarm init` is POST /swarm/init; it fails loudly with the engine's reason.
    docker_cli(
        docker_host,
        "swarm",
        "init",
        "--listen-addr",
        "127.0.0.1:2377",
        "--advertise-addr",
        "127.0.0.1",
    )
    swarm = json.loads(docker_cli(docker_host, "info", "--format", "{{json .Swarm}}"))
    if not swarm.get("ControlAvailable"):
        pytest.fail(f"swarm init left the test engine without a manager: {swarm}")
    return str(swarm["NodeID"])


async def wait_update(docker: aiodocker.Docker, name: str, done: set[str], timeout: float) -> Json:
    """Wait until the service's UpdateStatus reaches one of `done`; return the service."""
    deadline = time.monotonic() + timeout
    while True:
        service = dict(await docker.services.inspect(name))
        state = (service.get("UpdateStatus") or {}).get("State")
        if state in done:
            return service
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: update state {state!r}, not {done} after {timeout} s")
        await asyncio.sleep(0.3)


async def running_images(docker: aiodocker.Docker, name: str) -> list[str]:
    """Return the image of each task that should run and does (as the tasks say)."""
    tasks = await docker.tasks.list(filters={"service": [name], "desired-state": ["running"]})
    return [t["Spec"]["ContainerSpec"]["Image"] for t in tasks if t["Status"]["State"] == "running"]


async def wait_running(
    docker: aiodocker.Docker, name: str, image: str, timeout: float = 60
) -> None:
    """Wait until every task that should run runs `image`."""
    deadline = time.monotonic() + timeout
    while (found := await running_images(docker, name)) != [image]:
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: tasks run {found}, not [{image}] after {timeout} s")
        await asyncio.sleep(0.3)


class Swarm:
    """Create and update services as `docker service create/update` would."""

    def __init__(self, docker: aiodocker.Docker, images: DemoImages) -> None:
        self.docker = docker
        self._images = images
        self.created: list[str] = []

    async def create(
        self, tag: str, *, env: dict[str, str] | None = None, wait: bool = True
    ) -> SwarmService:
        """Create a one-replica service on host network running `tag` of the backend image."""
        name = f"rbswarm{secrets.token_hex(4)}"
        port = free_port()
        image = self.image(tag)
        template = {
            "ContainerSpec": {
                "Image": image,
                "Env": {"PORT": str(port), **(env or {})},
                "Init": True,
                "StopGracePeriod": 1_000_000_000,
            },
            "Networks": [{"Target": "host"}],
            "RestartPolicy": {"Condition": "on-failure", "Delay": 500_000_000},
        }
        self.created.append(name)
        await self.docker.services.create(
            template,
            name=name,
            mode={"Replicated": {"Replicas": 1}},
            update_config=FAST_UPDATES,
            rollback_config=FAST_UPDATES,
        )
        if wait:
            await wait_running(self.docker, name, image)
        return SwarmService(name, port, self._images.backend)

    def image(self, tag: str) -> str:
        """Return the backend image with `tag` (or a full reference as given)."""
        return tag if "/" in tag else f"{self._images.backend}:{tag}"

    async def update(self, service: SwarmService, tag: str, **changes: Any) -> None:
        """Update the service's image (and spec keys of its ContainerSpec); wait until done."""
        await self.update_spec(service, tag, **changes)
        await wait_update(self.docker, service.name, {"completed"}, 60)
        await wait_running(self.docker, service.name, self.image(tag))

    async def update_spec(
        self, service: SwarmService, tag: str, spec_changes: Json | None = None, **changes: Any
    ) -> None:
        """Send `docker service update --image` without waiting for it to finish."""
        for _ in range(5):
            current = dict(await self.docker.services.inspect(service.name))
            spec = current["Spec"]
            spec["TaskTemplate"]["ContainerSpec"].update({"Image": self.image(tag), **changes})
            spec.update(spec_changes or {})
            try:
                # aiodocker's services.update sets only the image: send the whole spec.
                await self.docker._query_json(
                    f"services/{service.name}/update",
                    method="POST",
                    params={"version": str(current["Version"]["Index"])},
                    data=json.dumps(spec),
                )
            except DockerError as exc:
                # Swarm itself bumps the version while it settles a new service: read again.
                if "out of sequence" not in str(exc.message):
                    raise
                await asyncio.sleep(0.3)
            else:
                return
        pytest.fail(f"{service.name}: every update was out of sequence")

    async def remove_all(self) -> None:
        """Remove every service the test created."""
        for name in self.created:
            try:
                await self.docker.services.delete(name)
            except DockerError as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
async def swarm(
    docker_host: str, swarm_manager: str, demo_images: DemoImages
) -> AsyncIterator[Swarm]:
    """Services on the test swarm; each one created is removed after the test."""
    async with aiodocker.Docker(url=docker_host) as docker:
        made = Swarm(docker, demo_images)
        try:
            yield made
        finally:
            async with asyncio.timeout(60):
                await made.remove_all()


SwarmProviderFactory = Callable[..., DockerSwarmProvider]


@pytest.fixture
async def make_swarm_provider(docker_host: str) -> AsyncIterator[SwarmProviderFactory]:
    """Build docker_swarm providers for a service; close them all after the test."""
    made: list[DockerSwarmProvider] = []

    def make(service: str, **settings: Any) -> DockerSwarmProvider:
        defaults: dict[str, Any] = {"poll_interval_seconds": 0.3, "update_timeout_seconds": 60}
        config = DockerSwarmSettings(
            provider="docker_swarm",
            service=service,
            docker_host=docker_host,
            **{**defaults, **settings},
        )
        provider = DockerSwarmProvider(config)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()
