"""The docker_compose provider against a real Docker Engine (no mocks)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from providers.base import NotFound, Refused, RollbackFailed
from providers.compose_files import write_pin
from providers.images import ImageRef
from tests.support.docker import (
    ComposeContainer,
    ComposeContainerFactory,
    ComposeProviderFactory,
    DemoImages,
    unique_project,
    wait_http,
)
from tests.support.progress import Recorder

ProviderFactory = ComposeProviderFactory


@pytest.fixture
def make_provider(make_compose_provider: ProviderFactory) -> ProviderFactory:
    """Build providers for a project/service, closed after the test."""
    return make_compose_provider


@pytest.fixture
def docker(docker_client: aiodocker.Docker) -> aiodocker.Docker:
    """A client for the test's own checks on containers."""
    return docker_client


async def inspect(docker: aiodocker.Docker, name: str) -> dict[str, Any]:
    """Return a container's inspect document by name."""
    return await docker.containers.container(name).show()


async def project_container_names(docker: aiodocker.Docker, project: str) -> list[str]:
    """Return the names of all containers of a project, stopped ones included."""
    filters = json.dumps({"label": [f"com.docker.compose.project={project}"]})
    found = await docker.containers.list(all=True, filters=filters)
    return sorted(c["Names"][0].lstrip("/") for c in found)


async def health(container: ComposeContainer) -> dict[str, Any]:
    """Return the parsed /health answer of a container."""
    body: dict[str, Any] = json.loads(await wait_http(f"{container.url}/health"))
    return body


@pytest.fixture
async def backend(compose_container: ComposeContainerFactory) -> ComposeContainer:
    """A compose backend on v1.2.4 that answers /health."""
    container = await compose_container(
        unique_project(), "backend", "v1.2.4", env={"APP_MODE": "prod"}, labels={"team": "crm"}
    )
    assert (await health(container))["version"] == "v1.2.4"
    return container


async def test_versions_are_newest_first_with_current_and_previous_stable(
    backend: ComposeContainer, make_provider: ProviderFactory, demo_images: DemoImages
) -> None:
    provider = make_provider(backend.project)

    versions = await provider.list_versions()

    names = [v.name for v in versions]
    assert names == [demo_images.broken_tag, "v1.2.4", "v1.2.3", "v1.2.2"]
    assert [v.name for v in versions if v.current] == ["v1.2.4"]
    assert [v.name for v in versions if v.previous_stable] == ["v1.2.3"]
    created = [v.created_at for v in versions]
    assert all(c is not None for c in created)
    assert created == sorted(created, reverse=True)  # type: ignore[type-var]
    assert await provider.current_version() == "v1.2.4"


async def test_describe_state_says_what_runs(
    backend: ComposeContainer, make_provider: ProviderFactory
) -> None:
    state = await make_provider(backend.project).describe_state()

    assert state == (
        f"backend: 1 container running rollbot-test/backend:v1.2.4 ({backend.name} running)"
    )


async def test_plan_without_pin_warns_that_compose_up_brings_the_old_tag_back(
    backend: ComposeContainer, make_provider: ProviderFactory, docker: aiodocker.Docker
) -> None:
    plan = await make_provider(backend.project).plan("v1.2.3")

    text = "\n".join(plan.steps)
    assert f"Create `{backend.id[:12]}_{backend.name}` from rollbot-test/backend:v1.2.3" in text
    assert "replaces rollbot-test/backend:v1.2.4" in text
    assert "network host" in text
    assert "restart policy unless-stopped" in text
    assert f"Stop `{backend.name}`" in text
    assert "allowing 10 s" in text
    assert plan.warnings == [
        "Could not check the compose file: no `compose_files` setting and the containers do "
        "not name theirs. Make sure it names rollbot-test/backend:v1.2.3 before the next "
        "`docker compose up -d`, or that run brings rollbot-test/backend:v1.2.4 back."
    ]
    # A plan changes nothing.
    assert await project_container_names(docker, backend.project) == [backend.name]


async def test_plan_with_pin_names_the_file_and_honours_the_stop_timeout(
    backend: ComposeContainer, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    pin = tmp_path / ".env"
    provider = make_provider(
        backend.project, pin_env_file=pin, pin_variable="BACKEND_TAG", stop_timeout_seconds=3
    )

    plan = await provider.plan("v1.2.3")

    assert plan.warnings == []
    assert f"Set BACKEND_TAG=v1.2.3 in {pin}" in plan.steps[-1]
    assert any("allowing 3 s" in step for step in plan.steps)


async def test_plan_says_it_will_pull_a_missing_tag_when_pull_is_on(
    backend: ComposeContainer, make_provider: ProviderFactory
) -> None:
    plan = await make_provider(backend.project, pull=True).plan("v0.0.1")

    assert plan.steps[0].startswith("Pull rollbot-test/backend:v0.0.1 from its registry")


async def test_rollback_recreates_the_container_like_compose(
    backend: ComposeContainer, make_provider: ProviderFactory, docker: aiodocker.Docker
) -> None:
    before = await inspect(docker, backend.name)
    progress = Recorder()

    outcome = await make_provider(backend.project).rollback("v1.2.3", progress)

    after = await inspect(docker, backend.name)
    assert after["Id"] != before["Id"]
    assert after["Name"] == f"/{backend.name}"
    assert after["Config"]["Image"] == "rollbot-test/backend:v1.2.3"
    assert after["State"]["Running"]
    target_id = (await docker.images.inspect("rollbot-test/backend:v1.2.3"))["Id"]
    assert after["Config"]["Labels"] == {
        **before["Config"]["Labels"],
        "com.docker.compose.image": target_id,
    }
    assert f"PORT={backend.port}" in after["Config"]["Env"]
    assert "APP_MODE=prod" in after["Config"]["Env"]
    assert after["HostConfig"]["NetworkMode"] == "host"
    assert after["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert after["HostConfig"]["Init"] is True
    assert (await health(backend)) == {"status": "ok", "version": "v1.2.3"}
    # The old container is gone: only the new one is left in the project.
    assert await project_container_names(docker, backend.project) == [backend.name]
    assert "now runs rollbot-test/backend:v1.2.3" in outcome.summary
    assert any("Could not check the compose file" in note for note in outcome.notes)
    assert "Created" in progress.text and "Stopped" in progress.text
    assert "Removed the old container" in progress.text
    assert "killed after" not in progress.text


async def test_rollback_keeps_an_explicit_command(
    compose_container: ComposeContainerFactory,
    make_provider: ProviderFactory,
    docker: aiodocker.Docker,
) -> None:
    cmd = ["/bin/sh", "-c", "exec httpd -f -p $PORT -h /www"]
    container = await compose_container(unique_project(), "backend", "v1.2.4", cmd=cmd)

    await make_provider(container.project).rollback("v1.2.3", Recorder())

    assert (await inspect(docker, container.name))["Config"]["Cmd"] == cmd
    assert (await health(container))["version"] == "v1.2.3"


async def test_rollback_keeps_network_aliases(
    compose_container: ComposeContainerFactory,
    make_provider: ProviderFactory,
    docker: aiodocker.Docker,
) -> None:
    project = unique_project()
    network = await docker.networks.create({"Name": f"{project}_default"})
    try:
        container = await compose_container(
            project, "backend", "v1.2.4", network=f"{project}_default"
        )

        await make_provider(project).rollback("v1.2.3", Recorder())

        after = await inspect(docker, container.name)
        assert after["HostConfig"]["NetworkMode"] == f"{project}_default"
        aliases = after["NetworkSettings"]["Networks"][f"{project}_default"]["Aliases"]
        assert {"backend", container.name} <= set(aliases)
        assert container.id[:12] not in aliases
    finally:
        for c in await docker.containers.list(
            all=True, filters=json.dumps({"label": [f"com.docker.compose.project={project}"]})
        ):
            await c.delete(force=True)
        await network.delete()


async def test_missing_tag_is_not_found_and_changes_nothing(
    backend: ComposeContainer, make_provider: ProviderFactory, docker: aiodocker.Docker
) -> None:
    before = await inspect(docker, backend.name)
    provider = make_provider(backend.project)

    with pytest.raises(NotFound) as planned:
        await provider.plan("v0.0.1")
    with pytest.raises(NotFound) as rolled:
        await provider.rollback("v0.0.1", Recorder())

    for error in (planned.value, rolled.value):
        assert "`v0.0.1`" in error.message
        assert "v1.2.3" in error.message and "v1.2.2" in error.message
    after = await inspect(docker, backend.name)
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert await project_container_names(docker, backend.project) == [backend.name]


async def test_rollback_to_the_running_tag_is_refused(
    backend: ComposeContainer, make_provider: ProviderFactory
) -> None:
    with pytest.raises(Refused, match=r"already runs rollbot-test/backend:v1\.2\.4"):
        await make_provider(backend.project).rollback("v1.2.4", Recorder())


async def test_unknown_service_is_not_found(
    make_provider: ProviderFactory, demo_images: DemoImages
) -> None:
    provider = make_provider(unique_project(), service="nothing")

    with pytest.raises(NotFound, match="No container of service `nothing`"):
        await provider.describe_state()


async def test_broken_tag_fails_and_restores_the_old_container(
    backend: ComposeContainer,
    make_provider: ProviderFactory,
    docker: aiodocker.Docker,
    demo_images: DemoImages,
    tmp_path: Path,
) -> None:
    pin = tmp_path / ".env"
    pin.write_text("BACKEND_TAG=v1.2.4\n")
    before = await inspect(docker, backend.name)
    progress = Recorder()
    provider = make_provider(backend.project, pin_env_file=pin, pin_variable="BACKEND_TAG")

    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback(demo_images.broken_tag, progress)

    error = failed.value
    assert "fatal: cannot connect to the database" in error.message
    assert "exited with code 1" in error.message or "restarted" in error.message
    assert error.target_state == (
        "backend runs rollbot-test/backend:v1.2.4 again (old container restored)"
    )
    after = await inspect(docker, backend.name)
    assert after["Id"] == before["Id"]
    assert after["State"]["Running"]
    assert (await health(backend))["version"] == "v1.2.4"
    assert await project_container_names(docker, backend.project) == [backend.name]
    assert pin.read_text() == "BACKEND_TAG=v1.2.4\n"
    assert "Restoring the old one" in progress.text


async def test_rollback_rewrites_the_pin_file(
    backend: ComposeContainer, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    pin = tmp_path / ".env"
    pin.write_text("# deployed by CI\nFRONTEND_TAG=v3\nexport BACKEND_TAG=v1.2.4\nDEBUG=0\n")
    progress = Recorder()
    provider = make_provider(backend.project, pin_env_file=pin, pin_variable="BACKEND_TAG")

    outcome = await provider.rollback("v1.2.3", progress)

    assert (
        pin.read_text() == "# deployed by CI\nFRONTEND_TAG=v3\nexport BACKEND_TAG=v1.2.3\nDEBUG=0\n"
    )
    assert outcome.notes[0] == f"Pinned BACKEND_TAG=v1.2.3 in {pin}."
    assert f"Pinned BACKEND_TAG=v1.2.3 in {pin}." in progress.messages
    assert [p.name for p in tmp_path.iterdir()] == [".env"]


def test_write_pin_adds_a_missing_variable_and_keeps_the_mode(tmp_path: Path) -> None:
    pin = tmp_path / ".env"
    pin.write_text("OTHER=1")
    pin.chmod(0o600)

    write_pin(pin, "BACKEND_TAG", "v1.2.3")

    assert pin.read_text() == "OTHER=1\nBACKEND_TAG=v1.2.3\n"
    assert pin.stat().st_mode & 0o777 == 0o600


async def test_unhealthy_target_is_rolled_back(
    compose_container: ComposeContainerFactory,
    make_provider: ProviderFactory,
    docker: aiodocker.Docker,
    demo_images: DemoImages,
) -> None:
    container = await compose_container(
        unique_project(), "api", demo_images.checked_healthy_tag, repository=demo_images.checked
    )
    before = await inspect(docker, container.name)
    provider = make_provider(container.project, service="api")

    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback(demo_images.checked_unhealthy_tag, Recorder())

    assert "its HEALTHCHECK reports unhealthy" in failed.value.message
    assert failed.value.target_state == (
        f"api runs {demo_images.checked}:{demo_images.checked_healthy_tag} again "
        "(old container restored)"
    )
    after = await inspect(docker, container.name)
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert (await health(container))["version"] == demo_images.checked_healthy_tag


async def test_healthy_target_is_waited_for(
    compose_container: ComposeContainerFactory,
    make_provider: ProviderFactory,
    docker: aiodocker.Docker,
    demo_images: DemoImages,
) -> None:
    container = await compose_container(
        unique_project(), "api", demo_images.checked_unhealthy_tag, repository=demo_images.checked
    )
    progress = Recorder()

    await make_provider(container.project, service="api").rollback(
        demo_images.checked_healthy_tag, progress
    )

    after = await inspect(docker, container.name)
    assert after["State"]["Health"]["Status"] == "healthy"
    assert f"`{container.name}` is running and healthy." in progress.messages


async def test_a_forced_stop_is_reported(
    compose_container: ComposeContainerFactory, make_provider: ProviderFactory
) -> None:
    # Without an init, busybox httpd runs as PID 1 and ignores SIGTERM.
    container = await compose_container(unique_project(), "backend", "v1.2.4", init=False)
    await wait_http(f"{container.url}/health")
    progress = Recorder()

    await make_provider(container.project, stop_timeout_seconds=1).rollback("v1.2.3", progress)

    assert "ignored SIGTERM: killed after 1 s" in progress.text
    assert (await health(container))["version"] == "v1.2.3"


async def test_a_target_not_up_in_time_is_rolled_back(
    compose_container: ComposeContainerFactory,
    make_provider: ProviderFactory,
    docker: aiodocker.Docker,
    demo_images: DemoImages,
) -> None:
    container = await compose_container(
        unique_project(), "api", demo_images.checked_unhealthy_tag, repository=demo_images.checked
    )
    # The first health check runs after a 1 s interval: too late for a 0.3 s budget.
    provider = make_provider(container.project, service="api", healthy_timeout_seconds=0.3)

    with pytest.raises(RollbackFailed, match=r"it was not up within 0\.3 s"):
        await provider.rollback(demo_images.checked_healthy_tag, Recorder())

    after = await inspect(docker, container.name)
    assert after["Id"] == container.id and after["State"]["Running"]


async def test_a_deadline_mid_swap_puts_the_old_container_back(
    compose_container: ComposeContainerFactory,
    make_provider: ProviderFactory,
    docker: aiodocker.Docker,
    demo_images: DemoImages,
) -> None:
    container = await compose_container(
        unique_project(), "api", demo_images.checked_healthy_tag, repository=demo_images.checked
    )
    provider = make_provider(container.project, service="api")

    # The unhealthy target needs about 2 s to be judged: the deadline falls while waiting.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.5):
            await provider.rollback(demo_images.checked_unhealthy_tag, Recorder())

    after = await inspect(docker, container.name)
    assert after["Id"] == container.id and after["State"]["Running"]
    assert await project_container_names(docker, container.project) == [container.name]
    assert (await health(container))["version"] == demo_images.checked_healthy_tag


def test_image_refs_split_at_the_tag_not_the_registry_port() -> None:
    assert ImageRef.parse("registry:5000/team/app:v1") == ImageRef("registry:5000/team/app", "v1")
    assert ImageRef.parse("registry:5000/team/app") == ImageRef("registry:5000/team/app", "latest")
    assert ImageRef.parse("docker.io/library/nginx:1.25") == ImageRef("nginx", "1.25")
    assert ImageRef.parse("app:v2@sha256:abc") == ImageRef("app", "v2")


async def test_a_leftover_temporary_container_is_ignored_and_replaced(
    backend: ComposeContainer, make_provider: ProviderFactory, docker: aiodocker.Docker
) -> None:
    before = await inspect(docker, backend.name)
    leftover = f"{backend.id[:12]}_{backend.name}"
    config = {"Image": "rollbot-test/backend:v1.2.2", "Labels": before["Config"]["Labels"]}
    await docker.containers.create(config, name=leftover)
    provider = make_provider(backend.project)

    assert await provider.describe_state() == (
        f"backend: 1 container running rollbot-test/backend:v1.2.4 ({backend.name} running)"
    )
    await provider.rollback("v1.2.3", Recorder())

    assert await project_container_names(docker, backend.project) == [backend.name]
    assert (await health(backend))["version"] == "v1.2.3"
