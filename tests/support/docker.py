"""Fixtures for a real Docker Engine: demo images built without a registry, compose-like containers.

The engine is the one `scripts/start-dockerd.sh` starts; the test command exports DOCKER_HOST.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import httpx
import pytest

from playground import images as shared
from playground.images import BROKEN, HEALTHCHECK, SERVE, DockerCommandError
from playground.world import free_port
from providers.docker_compose import DockerComposeProvider, DockerComposeSettings


@dataclass(frozen=True)
class DemoImages:
    """Names of the demo images; every tag of `backend` serves /health with its version."""

    backend: str = "rollbot-test/backend"
    backend_tags: tuple[str, ...] = ("v1.2.2", "v1.2.3", "v1.2.4")
    broken_tag: str = "v9.9.9-broken"
    checked: str = "rollbot-test/checked"
    checked_healthy_tag: str = "v2.0.0"
    checked_unhealthy_tag: str = "v2.0.1-unhealthy"

    def ref(self, repository: str, tag: str) -> str:
        """Return `repository:tag`."""
        return f"{repository}:{tag}"

    def all_refs(self) -> list[str]:
        """Return every image reference, in creation order."""
        return [
            *(self.ref(self.backend, t) for t in (*self.backend_tags, self.broken_tag)),
            self.ref(self.checked, self.checked_healthy_tag),
            self.ref(self.checked, self.checked_unhealthy_tag),
        ]


@dataclass
class ComposeContainer:
    """A container started the way compose starts a service's first container."""

    project: str
    service: str
    name: str
    id: str
    port: int
    image: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Return the base URL it serves on (host network)."""
        return f"http://127.0.0.1:{self.port}"


ComposeContainerFactory = Callable[..., Awaitable[ComposeContainer]]

# Where scripts/install-compose.sh puts the Compose v2 CLI it builds.
COMPOSE_CLI = "/tmp/rollbot-tools/docker-compose"

LEAKY_PASSWORD = "s3cr3t!"
LEAKY_DSN = f"postgresql://app:{LEAKY_PASSWORD}@db/x"
CACHE_PASSWORD = "0ther-pw!"
# A compose service command (its env holding LEAKY_DSN as DATABASE_URL) that serves on
# v1.2.4; on any other version it prints, as a crashing app would, its database URL,
# the password alone, a replica's URL with it and a cache URL with another password,
# and exits.
LEAKY_CMD = [
    "/bin/sh",
    "-c",
    'case "$(cat /www/health)" in *v1.2.4*) exec httpd -f -p $PORT -h /www;; esac; '
    'echo "DATABASE_URL=$DATABASE_URL" >&2; p=${DATABASE_URL#*://*:}; p=${p%@*}; '
    'echo "password $p rejected, trying postgresql://app:$p@replica/x" >&2; '
    f'echo "cache at redis://:{CACHE_PASSWORD}@cache:6379 is down" >&2; exit 1',
]


def docker_cli(host: str, *args: str, stdin: bytes | None = None) -> str:
    """Run the docker CLI against `host` and return its output; fail with its stderr."""
    try:
        return shared.docker_cli(host, *args, stdin=stdin)
    except DockerCommandError as exc:
        pytest.fail(str(exc))


def unique_project(prefix: str = "rbtest") -> str:
    """Return a compose project name no other test uses."""
    return f"{prefix}{secrets.token_hex(4)}"


async def wait_http(url: str, timeout: float = 15.0) -> str:
    """Wait until `url` answers 200 and return its body; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                response = await client.get(url)
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    return response.text
                last = f"HTTP {response.status_code}"
            await asyncio.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout} s (last: {last})")


@pytest.fixture(scope="session")
def docker_host() -> str:
    """Return DOCKER_HOST after checking the engine answers; fail loudly, never skip."""
    host = os.environ.get("DOCKER_HOST")
    if not host:
        pytest.fail(
            "DOCKER_HOST is not set: run scripts/start-dockerd.sh and "
            "export DOCKER_HOST=unix:///tmp/rollbot-docker/docker.sock"
        )
    if shutil.which("docker") is None:
        pytest.fail("The docker CLI is not installed: run scripts/start-dockerd.sh")
    result = subprocess.run(
        ["docker", "-H", host, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"The Docker Engine at {host} does not answer: {result.stderr.decode()}"
            "Start it with scripts/start-dockerd.sh."
        )
    return host


@pytest.fixture(scope="session")
def demo_images(docker_host: str, tmp_path_factory: pytest.TempPathFactory) -> DemoImages:
    """Build the demo images with `docker import` (no registry), unless they already exist."""
    images = DemoImages()
    if all(shared.image_exists(docker_host, ref) for ref in images.all_refs()):
        return images
    if reason := shared.can_build():
        pytest.fail(f"Cannot build the demo images: {reason}; run scripts/start-dockerd.sh")
    workdir = tmp_path_factory.mktemp("images")
    try:
        shared.import_versions(docker_host, workdir, images.backend, images.backend_tags)
        time.sleep(shared.CREATED_GAP_SECONDS)
        broken = images.ref(images.backend, images.broken_tag)
        shared.import_image(docker_host, workdir, broken, images.broken_tag, [f"CMD {BROKEN}"])
        for tag, path in (
            (images.checked_healthy_tag, "health"),
            (images.checked_unhealthy_tag, "nope"),
        ):
            time.sleep(shared.CREATED_GAP_SECONDS)
            changes = [f"CMD {SERVE}", HEALTHCHECK.format(path=path)]
            shared.import_image(docker_host, workdir, images.ref(images.checked, tag), tag, changes)
    except DockerCommandError as exc:
        pytest.fail(str(exc))
    return images


@pytest.fixture
async def compose_container(
    docker_host: str, demo_images: DemoImages
) -> AsyncIterator[ComposeContainerFactory]:
    """Start containers like compose does; remove every container of their projects after."""
    projects: set[str] = set()
    async with aiodocker.Docker(url=docker_host) as docker:

        async def start(
            project: str,
            service: str,
            tag: str,
            port: int | None = None,
            *,
            repository: str | None = None,
            env: Mapping[str, str] | None = None,
            labels: Mapping[str, str] | None = None,
            cmd: list[str] | None = None,
            init: bool = True,
            network: str = "host",
            healthcheck: Mapping[str, Any] | None = None,
        ) -> ComposeContainer:
            projects.add(project)
            port = port or free_port()
            image = f"{repository or demo_images.backend}:{tag}"
            full_env = {"PORT": str(port), **(env or {})}
            config = shared.compose_config(
                project,
                service,
                image,
                full_env,
                labels=labels,
                cmd=cmd,
                init=init,
                network=network,
                healthcheck=healthcheck,
            )
            name = f"{project}-{service}-1"
            async with asyncio.timeout(30):
                container = await docker.containers.create(config, name=name)
                await container.start()
            return ComposeContainer(project, service, name, container.id, port, image, full_env)

        try:
            yield start
        finally:
            async with asyncio.timeout(60):
                await shared.remove_projects(docker, projects)


ComposeProviderFactory = Callable[..., DockerComposeProvider]


@pytest.fixture
async def make_compose_provider(docker_host: str) -> AsyncIterator[ComposeProviderFactory]:
    """Build docker_compose providers for a project/service; close them all after the test."""
    made: list[DockerComposeProvider] = []

    def make(project: str, service: str = "backend", **settings: Any) -> DockerComposeProvider:
        defaults: dict[str, Any] = {"settle_seconds": 1, "healthy_timeout_seconds": 20}
        config = DockerComposeSettings(
            provider="docker_compose",
            project=project,
            service=service,
            docker_host=settings.pop("docker_host", docker_host),
            **{**defaults, **settings},
        )
        provider = DockerComposeProvider(config)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
async def docker_client(docker_host: str) -> AsyncIterator[aiodocker.Docker]:
    """A client for a test's own checks on containers and images."""
    async with aiodocker.Docker(url=docker_host) as client:
        yield client


@pytest.fixture(scope="session")
def compose_cli() -> str:
    """Return the Compose v2 CLI (ROLLBOT_TEST_COMPOSE, or the one install-compose.sh built)."""
    path = os.environ.get("ROLLBOT_TEST_COMPOSE") or COMPOSE_CLI
    if not os.access(path, os.X_OK):
        pytest.fail(f"No Compose CLI at {path}: run scripts/install-compose.sh")
    return path


def run_compose(cli: str, docker_host: str, folder: str, project: str, *args: str) -> str:
    """Run `docker compose` for a project whose compose.yaml is in `folder`; return stdout."""
    result = subprocess.run(
        [cli, "--project-directory", folder, "-p", project, *args],
        capture_output=True,
        timeout=120,
        check=False,
        env={"DOCKER_HOST": docker_host, "PATH": os.environ.get("PATH", ""), "HOME": folder},
    )
    if result.returncode != 0:
        pytest.fail(f"docker compose {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout.decode()
