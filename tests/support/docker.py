"""Fixtures for a real Docker Engine: demo images built without a registry, compose-like containers.

The engine is the one `scripts/start-dockerd.sh` starts; the test command exports DOCKER_HOST.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import httpx
import pytest

BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "httpd", "echo", "cat", "sleep", "wget", "true", "false")
SERVE = '["/bin/sh","-c","exec httpd -f -p ${PORT:-8080} -h /www"]'
BROKEN = '["/bin/sh","-c","echo \\"fatal: cannot connect to the database\\" >&2; exit 1"]'
HEALTHCHECK = (
    "HEALTHCHECK --interval=1s --timeout=2s --retries=2 "
    "CMD wget -q -O /dev/null http://127.0.0.1:${{PORT:-8080}}/{path} || exit 1"
)


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


def docker_cli(host: str, *args: str, stdin: bytes | None = None) -> str:
    """Run the docker CLI against `host` and return its output; fail with its stderr."""
    result = subprocess.run(
        ["docker", "-H", host, *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    if all(_image_exists(docker_host, ref) for ref in images.all_refs()):
        return images
    if not BUSYBOX.exists():
        pytest.fail(f"{BUSYBOX} is missing: run scripts/start-dockerd.sh (installs busybox-static)")
    workdir = tmp_path_factory.mktemp("images")
    # Created times order the versions, and the engine lists them in whole seconds.
    for tag in images.backend_tags:
        _import(docker_host, workdir, images.ref(images.backend, tag), tag, [f"CMD {SERVE}"])
        time.sleep(1.1)
    broken = images.ref(images.backend, images.broken_tag)
    _import(docker_host, workdir, broken, images.broken_tag, [f"CMD {BROKEN}"])
    for tag, path in (
        (images.checked_healthy_tag, "health"),
        (images.checked_unhealthy_tag, "nope"),
    ):
        time.sleep(1.1)
        changes = [f"CMD {SERVE}", HEALTHCHECK.format(path=path)]
        _import(docker_host, workdir, images.ref(images.checked, tag), tag, changes)
    return images


def _image_exists(host: str, ref: str) -> bool:
    result = subprocess.run(
        ["docker", "-H", host, "image", "inspect", ref],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


def _import(host: str, workdir: Path, ref: str, version: str, changes: list[str]) -> None:
    """Import a busybox root filesystem whose /www/health names `version` as image `ref`."""
    rootfs = _rootfs(workdir / version.replace("/", "_"), version)
    args = ["import"]
    for change in changes:
        args += ["-c", change]
    docker_cli(host, *args, "-", ref, stdin=_tar(rootfs))


def _rootfs(root: Path, version: str) -> Path:
    """Lay out /bin/busybox with its applets and /www/health."""
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "www").mkdir(exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        link = root / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    body = json.dumps({"status": "ok", "version": version}, separators=(",", ":"))
    (root / "www" / "health").write_text(body)
    return root


def _tar(root: Path) -> bytes:
    """Pack a directory as the tar stream `docker import -` reads."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(root, arcname=".")
    return buffer.getvalue()


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
        ) -> ComposeContainer:
            projects.add(project)
            port = port or free_port()
            image = f"{repository or demo_images.backend}:{tag}"
            full_env = {"PORT": str(port), **(env or {})}
            config = _compose_config(project, service, image, full_env, labels, cmd, init, network)
            name = f"{project}-{service}-1"
            async with asyncio.timeout(30):
                container = await docker.containers.create(config, name=name)
                await container.start()
            return ComposeContainer(project, service, name, container.id, port, image, full_env)

        try:
            yield start
        finally:
            async with asyncio.timeout(60):
                await _remove_projects(docker, projects)


def _compose_config(
    project: str,
    service: str,
    image: str,
    env: Mapping[str, str],
    labels: Mapping[str, str] | None,
    cmd: list[str] | None,
    init: bool,
    network: str,
) -> dict[str, Any]:
    """Return the create request compose would send for a service's first container."""
    config: dict[str, Any] = {
        "Image": image,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": {
            "com.docker.compose.project": project,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": "1",
            "com.docker.compose.oneoff": "False",
            **(labels or {}),
        },
        "HostConfig": {
            "NetworkMode": network,
            "Init": init,
            "RestartPolicy": {"Name": "unless-stopped"},
        },
    }
    if network != "host":
        aliases = [service, f"{project}-{service}-1"]
        config["NetworkingConfig"] = {"EndpointsConfig": {network: {"Aliases": aliases}}}
    if cmd is not None:
        config["Cmd"] = cmd
    return config


async def _remove_projects(docker: aiodocker.Docker, projects: set[str]) -> None:
    """Remove every container (the rollback's included) labelled with one of `projects`."""
    for project in projects:
        filters = json.dumps({"label": [f"com.docker.compose.project={project}"]})
        for container in await docker.containers.list(all=True, filters=filters):
            await container.delete(force=True, v=True)
