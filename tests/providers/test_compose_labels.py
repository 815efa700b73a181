"""After a rollback, what Compose v2 reads: `docker compose ps`, `up -d`, the file's image."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from playground import images as shared
from playground.world import free_port
from tests.support.docker import (
    ComposeContainerFactory,
    ComposeProviderFactory,
    DemoImages,
    run_compose,
    unique_project,
    wait_http,
)
from tests.support.progress import Recorder

COMPOSE_FILE = """\
services:
  backend:
    image: rollbot-test/backend:${{BACKEND_TAG:-v1.2.4}}
    network_mode: host
    init: true
    environment:
      PORT: "{port}"
"""


class ComposeProject:
    """A project the real Compose CLI started from a compose.yaml and a .env in `folder`."""

    def __init__(self, cli: str, docker_host: str, folder: Path, port: int) -> None:
        self.cli, self.docker_host, self.folder, self.port = cli, docker_host, folder, port
        self.name = unique_project()
        self.file = folder / "compose.yaml"
        self.env = folder / ".env"

    def run(self, *args: str) -> str:
        """Run `docker compose <args>` for this project."""
        return run_compose(self.cli, self.docker_host, str(self.folder), self.name, *args)

    def ps(self) -> list[dict[str, str]]:
        """Return `docker compose ps --format json`, one object per container."""
        out = self.run("ps", "--all", "--format", "json").strip()
        rows = json.loads(out) if out.startswith("[") else [json.loads(x) for x in out.splitlines()]
        return [r for r in rows if r]

    async def version(self) -> str:
        """Return the version the service answers on /health."""
        body = await wait_http(f"http://127.0.0.1:{self.port}/health")
        return str(json.loads(body)["version"])


@pytest.fixture
async def compose_project(
    compose_cli: str,
    docker_host: str,
    demo_images: DemoImages,
    tmp_path: Path,
    docker_client: aiodocker.Docker,
) -> AsyncIterator[ComposeProject]:
    """`docker compose up -d` of a backend on v1.2.4 (BACKEND_TAG in .env); removed after."""
    project = ComposeProject(compose_cli, docker_host, tmp_path, free_port())
    project.file.write_text(COMPOSE_FILE.format(port=project.port))
    project.env.write_text("BACKEND_TAG=v1.2.4\n")
    project.run("up", "-d")
    try:
        assert await project.version() == "v1.2.4"
        yield project
    finally:
        await shared.remove_projects(docker_client, [project.name])


async def test_compose_ps_shows_the_rolled_back_container_and_up_brings_the_file_tag_back(
    compose_project: ComposeProject, make_compose_provider: ComposeProviderFactory
) -> None:
    progress = Recorder()
    provider = make_compose_provider(compose_project.name)

    outcome = await provider.rollback("v1.2.3", progress)

    [row] = compose_project.ps()
    assert row["Service"] == "backend"
    assert row["Name"] == f"{compose_project.name}-backend-1"
    assert row["Image"] == "rollbot-test/backend:v1.2.3"
    assert row["State"] == "running"
    assert await compose_project.version() == "v1.2.3"
    warning = (
        f"The compose file {compose_project.file} still names rollbot-test/backend:v1.2.4; "
        "pin `image: rollbot-test/backend:v1.2.3` (or set BACKEND_TAG=v1.2.3, the variable it "
        "reads) before the next `docker compose up -d`, or that run brings "
        "rollbot-test/backend:v1.2.4 back."
    )
    assert outcome.notes == [warning]
    assert warning in progress.messages
    # What the thread said: `up -d` with the file unchanged puts the bad tag back.
    compose_project.run("up", "-d")
    assert await compose_project.version() == "v1.2.4"
    [row] = compose_project.ps()
    assert row["Image"] == "rollbot-test/backend:v1.2.4"


async def test_after_the_pin_compose_up_keeps_the_rolled_back_version(
    compose_project: ComposeProject, make_compose_provider: ComposeProviderFactory
) -> None:
    provider = make_compose_provider(
        compose_project.name, pin_env_file=compose_project.env, pin_variable="BACKEND_TAG"
    )

    outcome = await provider.rollback("v1.2.3", Recorder())

    assert compose_project.env.read_text() == "BACKEND_TAG=v1.2.3\n"
    assert outcome.notes[1] == (
        f"The compose file {compose_project.file} names rollbot-test/backend:v1.2.3: a later "
        "`docker compose up -d` keeps it (it recreates the container once, on the same image, "
        "because the config hash the container carries was taken for "
        "rollbot-test/backend:v1.2.4)."
    )
    compose_project.run("up", "-d")
    assert await compose_project.version() == "v1.2.3"
    [row] = compose_project.ps()
    assert (row["Image"], row["State"]) == ("rollbot-test/backend:v1.2.3", "running")


async def test_the_plan_reads_the_compose_file_named_in_the_settings(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  backend:\n    image: rollbot-test/backend:v1.2.4\n")
    provider = make_compose_provider(container.project, compose_files=[compose])

    plan = await provider.plan("v1.2.3")

    assert plan.warnings == [
        f"The compose file {compose} still names rollbot-test/backend:v1.2.4; pin "
        "`image: rollbot-test/backend:v1.2.3` before the next `docker compose up -d`, or that "
        "run brings rollbot-test/backend:v1.2.4 back."
    ]


async def test_an_unreadable_compose_file_is_said_not_checked(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    missing = tmp_path / "gone" / "compose.yaml"
    provider = make_compose_provider(container.project, compose_files=[missing])

    plan = await provider.plan("v1.2.3")

    assert plan.warnings == [
        f"Could not check the compose file (cannot read {missing}: No such file or directory). "
        "Make sure it names rollbot-test/backend:v1.2.3 before the next `docker compose up -d`, "
        "or that run brings rollbot-test/backend:v1.2.4 back."
    ]
