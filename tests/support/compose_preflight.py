"""Shared pieces of the docker_compose preflight tests: images that differ, report helpers."""

from __future__ import annotations

import json
from typing import Any

import aiodocker
import pytest

from providers.capabilities import PreflightReport, Verdict
from tests.support.docker import DemoImages, docker_cli

SECRET_VALUE = "pr0d-s3cret-value"
BACKEND = "rollbot-test/backend"

# Two versions of one app whose images differ in env names, exposed port and command.
CURRENT_CHANGES = [
    "ENV OLD_KEY=1 SHARED=1",
    "EXPOSE 8080",
    'CMD ["/bin/sh","-c","exec httpd -f -p ${PORT:-8080} -h /www"]',
]
TARGET_CHANGES = [
    "ENV FEATURE_X=1 SHARED=1",
    "EXPOSE 8081",
    'CMD ["/bin/sh","-c","exec httpd -f -p ${PORT:-8081} -h /www -v"]',
]
EXPECTED_CHANGES = [
    "env names added: FEATURE_X; removed: OLD_KEY",
    "ports: 8080/tcp -> 8081/tcp",
    "command: /bin/sh -c 'exec httpd -f -p ${PORT:-8080} -h /www' -> "
    "/bin/sh -c 'exec httpd -f -p ${PORT:-8081} -h /www -v'",
]


def build(docker_host: str, ref: str, base: str, lines: list[str]) -> None:
    """Build `ref` from a local base image (the legacy builder needs no registry)."""
    dockerfile = "\n".join([f"FROM {base}", *lines]) + "\n"
    docker_cli(docker_host, "build", "-q", "-t", ref, "-", stdin=dockerfile.encode())


def image_json(docker_host: str, ref: str) -> dict[str, Any]:
    """Return `docker image inspect` of one image."""
    found: list[dict[str, Any]] = json.loads(docker_cli(docker_host, "image", "inspect", ref))
    return found[0]


def build_once(docker_host: str, ref: str, base: str, lines: list[str]) -> None:
    """Build `ref` like `build`, unless the engine holds it already."""
    try:
        image_json(docker_host, ref)
    except pytest.fail.Exception:
        build(docker_host, ref, base, lines)


@pytest.fixture(scope="module")
def config_images(docker_host: str, demo_images: DemoImages) -> str:
    """Build `rollbot-test/pfconfig:v1` (target) and `:v2` (current) unless they exist."""
    repository = "rollbot-test/pfconfig"
    base = demo_images.ref(demo_images.backend, "v1.2.3")
    for tag, lines in (("v1", TARGET_CHANGES), ("v2", CURRENT_CHANGES)):
        build_once(docker_host, f"{repository}:{tag}", base, lines)
    return repository


def by_name(report: PreflightReport) -> dict[str, tuple[Verdict, str]]:
    """Return each check's verdict and why, by name."""
    return {c.name: (c.verdict, c.why) for c in report.checks}


def assert_one_line_without(report: PreflightReport, *words: str) -> None:
    """Check every why and change line is one line naming none of `words`."""
    for line in [c.why for c in report.checks] + report.changes:
        assert "\n" not in line
        for word in words:
            assert word not in line


async def engine_snapshot(
    docker: aiodocker.Docker, project: str, repository: str
) -> list[tuple[Any, ...]]:
    """Return what the engine shows of a project's containers and a repository's images."""
    filters = json.dumps({"label": [f"com.docker.compose.project={project}"]})
    containers = await docker.containers.list(all=True, filters=filters)
    shown = [await docker.containers.container(c.id).show() for c in containers]
    state = [
        (c["Id"], c["Name"], c["Image"], c["State"]["Status"], c["State"]["StartedAt"])
        for c in shown
    ]
    listed = await docker.images.list(filters={"reference": [repository]})
    images = [(i["Id"], tuple(sorted(i.get("RepoTags") or []))) for i in listed]
    return sorted(state) + sorted(images)
