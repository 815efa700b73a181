"""Tiny real images made without a registry, and containers started the way compose does.

Each image is a busybox root filesystem whose httpd serves /health naming the image's
version, imported with `docker import` (no registry is reached). The tests' Docker fixtures
and the playground's demo backend both build and run them from here.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiodocker

BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "httpd", "echo", "cat", "sleep", "wget", "true", "false")
# Serves /www on $PORT: with host networking each container picks its own port.
SERVE = '["/bin/sh","-c","exec httpd -f -p ${PORT:-8080} -h /www"]'
BROKEN = '["/bin/sh","-c","echo \\"fatal: cannot connect to the database\\" >&2; exit 1"]'
HEALTHCHECK = (
    "HEALTHCHECK --interval=1s --timeout=2s --retries=2 "
    "CMD wget -q -O /dev/null http://127.0.0.1:${{PORT:-8080}}/{path} || exit 1"
)
# The engine reports Created in whole seconds, and versions are ordered by it.
CREATED_GAP_SECONDS = 1.1
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class DockerCommandError(RuntimeError):
    """The docker CLI failed; the message carries what it printed on stderr."""


def docker_cli(host: str, *args: str, stdin: bytes | None = None, timeout: float = 120) -> str:
    """Run the docker CLI against `host` and return its output."""
    try:
        result = subprocess.run(  # noqa: S603 - an argument list, no shell
            ["docker", "-H", host, *args],  # noqa: S607 - the docker CLI on PATH
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DockerCommandError(f"docker {' '.join(args)} failed: {exc}") from exc
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise DockerCommandError(f"docker {' '.join(args)} failed: {stderr}")
    return result.stdout.decode()


def image_exists(host: str, ref: str) -> bool:
    """Return True when the engine at `host` holds the image `ref`."""
    try:
        docker_cli(host, "image", "inspect", ref, timeout=30)
    except DockerCommandError:
        return False
    return True


def can_build() -> str | None:
    """Return why images cannot be built here (no docker CLI, no busybox), or None."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    if not BUSYBOX.exists():
        return f"{BUSYBOX} is missing (Debian's busybox-static provides it)"
    return None


def import_image(
    host: str, workdir: Path, ref: str, version: str, changes: Iterable[str] = (f"CMD {SERVE}",)
) -> None:
    """Import a busybox root filesystem whose /www/health names `version` as image `ref`."""
    rootfs = _rootfs(workdir / version.replace("/", "_"), version)
    args = ["import"]
    for change in changes:
        args += ["-c", change]
    docker_cli(host, *args, "-", ref, stdin=_tar(rootfs))


def import_versions(
    host: str,
    workdir: Path,
    repository: str,
    tags: Iterable[str],
    changes: Iterable[str] = (f"CMD {SERVE}",),
) -> None:
    """Import one image of `repository` per tag, oldest first, their Created times apart."""
    for index, tag in enumerate(tags):
        if index:
            time.sleep(CREATED_GAP_SECONDS)
        import_image(host, workdir, f"{repository}:{tag}", tag, changes)


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


def compose_config(
    project: str,
    service: str,
    image: str,
    env: Mapping[str, str],
    *,
    labels: Mapping[str, str] | None = None,
    cmd: list[str] | None = None,
    init: bool = True,
    network: str = "host",
    healthcheck: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the create request compose would send for a service's first container.

    `init` runs the app under docker-init: busybox httpd as PID 1 ignores SIGTERM, and
    every stop would otherwise wait out its whole timeout.
    """
    config: dict[str, Any] = {
        "Image": image,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": {
            PROJECT_LABEL: project,
            SERVICE_LABEL: service,
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
    if healthcheck is not None:
        config["Healthcheck"] = dict(healthcheck)
    return config


async def remove_projects(docker: aiodocker.Docker, projects: Iterable[str]) -> int:
    """Remove every container labelled with one of `projects` (a rollback's too); count them."""
    removed = 0
    for project in projects:
        filters = json.dumps({"label": [f"{PROJECT_LABEL}={project}"]})
        for container in await docker.containers.list(all=True, filters=filters):
            await container.delete(force=True, v=True)
            removed += 1
    return removed
