"""What the demo rolls back: real things where the machine has them, local fakes otherwise.

- backend: a real container on a Docker engine (two tiny local images, v1.2.3 and v1.2.4),
  or, without an engine, a simulated one on the fake Vercel API;
- frontend: the fake Vercel API; worker: the fake Railway API (always simulated);
- web: a Kubernetes Deployment on a simulated API server (playground/kube_api.py), driven
  by the real kubernetes provider through a kubeconfig in the data folder;
- release: a real git repository (a local bare remote with tags v1.2.2 to v1.2.4).

Each service comes with an HTTP health check, so the verification table has rows: the
container's own /health, or for a simulated service a local endpoint that reports the
version its fake serves now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import httpx
from aiohttp import web

from playground import images
from playground.kube_api import FakeKube
from playground.railway_api import FakeRailway
from playground.vercel_api import FakeVercel

VERSIONS = ("v1.2.2", "v1.2.3", "v1.2.4")  # the last one runs when the demo starts
IMAGE_REPOSITORY = "rollbot-demo/backend"
IMAGE_TAGS = ("v1.2.3", "v1.2.4")
PRIVATE_ENGINE = "unix:///tmp/rollbot-docker/docker.sock"  # scripts/start-dockerd.sh
DEFAULT_ENGINES = ("unix:///var/run/docker.sock", PRIVATE_ENGINE)
DEMO_LABEL = "org.rollbot.demo"  # "<hostname>:<pid>" of the demo that made the container
ENGINE_TIMEOUT = 5.0
START_TIMEOUT = 30.0
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Release Bot",
    "GIT_AUTHOR_EMAIL": "release@example.com",
    "GIT_COMMITTER_NAME": "Release Bot",
    "GIT_COMMITTER_EMAIL": "release@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
}

# (Slack user id, name, role): who the playground lets you be.
REQUESTER = ("U_ANA", "Ana", "requester")
APPROVER = ("U_BEN", "Ben", "approver")
OUTSIDER = ("U_CY", "Cy", "no rights")
PEOPLE = (REQUESTER, APPROVER, OUTSIDER)


@dataclass
class Service:
    """One service of the demo config, and how the playground labels it."""

    name: str
    description: str
    provider: dict[str, Any]
    check_url: str
    note: str  # "real: ..." or "simulated: ..."
    env: dict[str, str] = field(default_factory=dict)  # tokens the bot reads


@dataclass
class World:
    """The services the demo set up; everything it started closes with its exit stack."""

    services: list[Service]
    remarks: list[str]  # which services are real or left out here, and why

    def config(self) -> dict[str, Any]:
        """Return the rollbot config for these services."""
        return demo_config(self.services)

    def env(self) -> dict[str, str]:
        """Return the variables the bot needs for the providers' tokens."""
        return {k: v for service in self.services for k, v in service.env.items()}

    def notes(self) -> dict[str, str]:
        """Return what the playground shows beside each service."""
        return {service.name: service.note for service in self.services}


def demo_config(services: list[Service]) -> dict[str, Any]:
    """The config: Ana and Ben may request, only Ben approves, Cy may do neither."""
    return {
        "approval": {
            "requesters": {"users": [REQUESTER[0], APPROVER[0]]},
            "approvers": {"users": [APPROVER[0]]},
            "required_approvals": 1,
        },
        # A drift after a rollback shows within seconds, not after rollbot's default minute.
        "runtime": {
            "verify_deadline_seconds": 30,
            "verify_interval_seconds": 1,
            "freeze_watch_seconds": 5,
        },
        "services": {
            service.name: {
                "description": service.description,
                "environments": {
                    "production": {
                        "provider": service.provider,
                        "checks": [
                            {
                                "name": f"{service.name} health",
                                "type": "http",
                                "url": service.check_url,
                                "expect_status": [200],
                                "body_contains": '"status":"ok"',
                            }
                        ],
                    }
                },
            }
            for service in services
        },
    }


async def build_world(data: Path, stack: AsyncExitStack, docker_host: str | None) -> World:
    """Start what the services need; `stack` stops it all (and removes the container)."""
    health = HealthServer()
    await health.start()
    stack.push_async_callback(health.close)
    vercel = FakeVercel()
    vercel.add_project("frontend", versions=VERSIONS)
    await vercel.start()
    stack.push_async_callback(vercel.close)
    worker = await _railway(stack)
    kube = FakeKube()
    kube.seed()
    await kube.start()
    stack.push_async_callback(kube.close)

    backend, why = await _real_backend(data, stack, docker_host)
    if backend is None:
        vercel.add_project("backend", versions=VERSIONS)
        backend = _vercel_service("backend", vercel, health)
        mode = f"backend: simulated on the fake Vercel API, because {why}"
    else:
        mode = f"backend: real, {why}"
    services = [
        backend,
        _vercel_service("frontend", vercel, health),
        _railway_service("worker", worker, health),
        _kube_service("web", kube, health, data),
    ]
    remarks = [mode]
    if release := _release(data, services[0].check_url):
        services.append(release)
    else:
        remarks.append("release: left out, because git is not installed (apt-get install git)")
    return World(services, remarks)


# --- the backend: a real container -----------------------------------------------------


async def find_engine(docker_host: str | None) -> tuple[str | None, list[str]]:
    """Return the first Docker engine that answers (DOCKER_HOST alone when set), and those tried."""
    candidates = [docker_host] if docker_host else list(DEFAULT_ENGINES)
    for host in candidates:
        if await _answers(host):
            return host, candidates
    return None, candidates


async def _answers(host: str) -> bool:
    try:
        async with aiodocker.Docker(url=host) as docker:
            await asyncio.wait_for(docker.version(), ENGINE_TIMEOUT)
    except (aiodocker.DockerError, OSError, TimeoutError, ValueError):
        return False
    return True


async def _real_backend(
    data: Path, stack: AsyncExitStack, docker_host: str | None
) -> tuple[Service | None, str]:
    """Run backend v1.2.4 in a compose-labelled container, or say why it cannot."""
    host, tried = await find_engine(docker_host)
    if host is None:
        return None, f"no Docker engine answers at {' or '.join(tried)}"
    try:
        await asyncio.to_thread(_ensure_images, host, data / "images")
    except (images.DockerCommandError, OSError) as exc:
        return None, f"the demo images could not be built on the Docker engine at {host}: {exc}"
    finally:
        shutil.rmtree(data / "images", ignore_errors=True)
    backend = DockerBackend(host)
    stack.push_async_callback(backend.remove)
    try:
        await backend.start()
    except (aiodocker.DockerError, OSError, TimeoutError) as exc:
        return None, f"the backend container did not start on the Docker engine at {host}: {exc}"
    return backend.service(), f"a container on the Docker engine at {host}"


def _ensure_images(host: str, workdir: Path) -> None:
    """Import the two backend images unless the engine holds them already."""
    refs = [f"{IMAGE_REPOSITORY}:{tag}" for tag in IMAGE_TAGS]
    if all(images.image_exists(host, ref) for ref in refs):
        return
    if reason := images.can_build():
        raise images.DockerCommandError(reason)
    images.import_versions(host, workdir, IMAGE_REPOSITORY, IMAGE_TAGS)


class DockerBackend:
    """backend v1.2.4 started the way compose starts it, on the host network."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.project = f"rollbot-demo-{secrets.token_hex(3)}"
        self.port = free_port()
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def url(self) -> str:
        """Return where the container serves."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Remove containers left by demos that died, then create and start backend v1.2.4."""
        env = {"PORT": str(self.port)}
        config = images.compose_config(
            self.project,
            "backend",
            f"{IMAGE_REPOSITORY}:{IMAGE_TAGS[-1]}",
            env,
            labels={DEMO_LABEL: self.owner},
        )
        async with aiodocker.Docker(url=self.host) as docker, asyncio.timeout(START_TIMEOUT):
            await self._remove_orphans(docker)
            container = await docker.containers.create(config, name=f"{self.project}-backend-1")
            await container.start()
            await _wait_health(f"{self.url}/health")

    async def remove(self) -> int:
        """Remove every container of the demo's project, the rollback's new one included."""
        async with aiodocker.Docker(url=self.host) as docker, asyncio.timeout(START_TIMEOUT):
            return await images.remove_projects(docker, [self.project])

    async def _remove_orphans(self, docker: aiodocker.Docker) -> None:
        """Remove the containers of earlier demos on this host whose process is gone."""
        host = socket.gethostname()
        filters = {"label": [DEMO_LABEL]}
        for container in await docker.containers.list(all=True, filters=filters):
            owner = str(container["Labels"].get(DEMO_LABEL, ""))
            name, _, pid = owner.rpartition(":")
            if name == host and pid.isdigit() and not _alive(int(pid)):
                await container.delete(force=True, v=True)

    def service(self) -> Service:
        """Return the backend as the config and the playground name it."""
        return Service(
            name="backend",
            description="demo API in a real Docker container",
            provider={
                "provider": "docker_compose",
                "project": self.project,
                "service": "backend",
                "docker_host": self.host,
                "healthy_timeout_seconds": 20,
            },
            check_url=f"{self.url}/health",
            note=(
                f"real: Docker container {self.project}-backend-1, "
                f"images {IMAGE_REPOSITORY}:{' and :'.join(IMAGE_TAGS)}"
            ),
        )


async def _wait_health(url: str) -> None:
    """Wait until the container answers its health endpoint (the caller bounds the wait)."""
    async with httpx.AsyncClient(timeout=1.0) as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive all the same
    return True


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- simulated services ----------------------------------------------------------------


class HealthServer:
    """/SERVICE/health for the simulated services: the version their fake serves now."""

    def __init__(self) -> None:
        self._versions: dict[str, Callable[[], str | None]] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    def add(self, service: str, version: Callable[[], str | None]) -> str:
        """Serve a service's health from `version`; return its URL."""
        self._versions[service] = version
        return f"{self.url}/{service}/health"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_get("/{service}/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, request: web.Request) -> web.Response:
        version = self._versions.get(request.match_info["service"])
        if version is None:
            raise web.HTTPNotFound()
        serving = version()
        if serving is None:
            return _json({"status": "down"}, status=503)
        return _json({"status": "ok", "version": serving})


def _json(body: dict[str, str], status: int = 200) -> web.Response:
    """Compact JSON, as the demo images' /health writes it."""
    return web.json_response(body, status=status, dumps=_compact)


def _compact(body: object) -> str:
    return json.dumps(body, separators=(",", ":"))


async def _railway(stack: AsyncExitStack) -> FakeRailway:
    fake = FakeRailway()
    fake.seed()
    await fake.start()
    stack.push_async_callback(fake.close)
    return fake


def _railway_service(name: str, fake: FakeRailway, health: HealthServer) -> Service:
    def serving() -> str | None:
        deployment = fake.serving()
        return deployment.tag if deployment else None

    return Service(
        name=name,
        description=f"{name} on Railway (simulated)",
        provider={
            "provider": "railway",
            "endpoint": fake.url,
            "token_env": "RAILWAY_TOKEN",
            "token_kind": "project",
            "project_id": fake.project_id,
            "service_id": fake.service_id,
            "environment_id": fake.environment_id,
            "poll_interval_seconds": 1,
        },
        check_url=health.add(name, serving),
        note=f"simulated: fake Railway API on {_host_port(fake.url)}",
        env={"RAILWAY_TOKEN": fake.token},
    )


def _vercel_service(name: str, fake: FakeVercel, health: HealthServer) -> Service:
    project = next(p for p in fake.projects.values() if p.name == name)

    def serving() -> str | None:
        deployment = project.serving()
        return deployment.version if deployment else None

    return Service(
        name=name,
        description=f"{name} on Vercel (simulated)",
        provider=fake.settings(project=name, poll_interval_seconds=1, promote_timeout_seconds=60),
        check_url=health.add(name, serving),
        note=f"simulated: fake Vercel API on {_host_port(fake.url)}",
        env={"VERCEL_TOKEN": fake.token},
    )


def _kube_service(name: str, fake: FakeKube, health: HealthServer, data: Path) -> Service:
    kubeconfig = fake.write_kubeconfig(data / "kubeconfig")
    return Service(
        name=name,
        description=f"{name}: Kubernetes Deployment shop/web (simulated API)",
        provider=fake.settings(kubeconfig),
        check_url=health.add(name, fake.serving),
        note=(
            f"simulated: Kubernetes Deployment shop/web, simulated API on "
            f"{_host_port(fake.url)} (the real provider, a simulated control plane)"
        ),
    )


def _host_port(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]


# --- release: a real git repository ----------------------------------------------------


def _release(data: Path, check_url: str) -> Service | None:
    """The deploy pipeline's repository, driven by rollback tags; None without git."""
    if shutil.which("git") is None:
        return None
    bare = release_repository(data)
    return Service(
        name="release",
        description="the deploy pipeline, driven by rollback tags (a local git repository)",
        provider={
            "provider": "git",
            "repository": str(bare),
            "branch": "main",
            "mode": "tag",
            "cache_dir": str(data / "git-cache"),
        },
        check_url=check_url,
        note=f"real: git repository {bare} (tags {VERSIONS[0]} to {VERSIONS[-1]})",
    )


def release_repository(data: Path) -> Path:
    """Create (once) a bare repository with one tagged release commit per version."""
    bare = data / "release.git"
    if (bare / "HEAD").exists():
        return bare
    work = data / "release-work"
    _git("init", "--quiet", "--bare", "-b", "main", str(bare))
    _git("clone", "--quiet", str(bare), str(work))
    for day, version in enumerate(VERSIONS, start=1):
        date = {"GIT_AUTHOR_DATE": f"2026-01-0{day}T12:00:00+00:00"}
        date["GIT_COMMITTER_DATE"] = date["GIT_AUTHOR_DATE"]
        (work / "VERSION").write_text(f"{version}\n")
        _git("add", "VERSION", cwd=work)
        _git("commit", "--quiet", "-m", f"Release {version}", cwd=work, env=date)
        _git("tag", "-a", version, "-m", f"Release {version}", cwd=work, env=date)
    _git("push", "--quiet", "origin", "HEAD:main", "--tags", cwd=work)
    shutil.rmtree(work)
    return bare


def _git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> None:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **GIT_ENV, **(env or {})}
    subprocess.run(  # noqa: S603 - an argument list, no shell
        ["git", *args],  # noqa: S607 - git on PATH
        cwd=cwd,
        env=full_env,
        check=True,
        capture_output=True,
        timeout=30,
    )
