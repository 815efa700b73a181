"""docker_compose preflight on a real Docker Engine: a local target, what changes, compose file."""

from __future__ import annotations

from pathlib import Path

import aiodocker
import pytest

from playground import images as shared
from playground.world import free_port
from providers.base import NotFound
from providers.capabilities import Describe, Preflight, Verdict
from tests.support import compose_preflight
from tests.support.compose_preflight import (
    BACKEND,
    EXPECTED_CHANGES,
    SECRET_VALUE,
    assert_one_line_without,
    by_name,
    engine_snapshot,
    image_json,
)
from tests.support.docker import (
    ComposeContainer,
    ComposeContainerFactory,
    ComposeProviderFactory,
    unique_project,
)
from tests.support.progress import Recorder

config_images = compose_preflight.config_images


# -- a target on this host --------------------------------------------------------------


async def test_a_local_target_passes_and_names_exact_identities(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    docker_host: str,
    docker_client: aiodocker.Docker,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    provider = make_compose_provider(container.project)
    assert isinstance(provider, Preflight)
    assert isinstance(provider, Describe)
    before = await engine_snapshot(docker_client, container.project, BACKEND)

    report = await provider.preflight("v1.2.3")

    current_id = image_json(docker_host, f"{BACKEND}:v1.2.4")["Id"]
    target_id = image_json(docker_host, f"{BACKEND}:v1.2.3")["Id"]
    assert report.current is not None
    assert report.current.version == "v1.2.4"
    assert report.current.exact == f"{current_id} (from {BACKEND}:v1.2.4)"
    assert report.target.version == "v1.2.3"
    assert report.target.exact == f"{target_id} (from {BACKEND}:v1.2.3)"
    checks = by_name(report)
    assert list(checks) == ["image-present", "compose-file"]
    assert checks["image-present"] == (
        Verdict.PASS,
        f"{BACKEND}:v1.2.3 is on this host (image {target_id.removeprefix('sha256:')[:12]}).",
    )
    # The container names no compose file: the check cannot be made.
    verdict, why = checks["compose-file"]
    assert verdict is Verdict.WARN
    assert why.startswith("Could not check the compose file")
    assert report.changes == []
    assert await engine_snapshot(docker_client, container.project, BACKEND) == before


async def test_identity_now_is_what_runs_and_follows_a_rollback(
    compose_container: ComposeContainerFactory, make_compose_provider: ComposeProviderFactory
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    provider = make_compose_provider(container.project)
    report = await provider.preflight("v1.2.3")

    assert await provider.identity_now() == report.current
    await provider.rollback("v1.2.3", Recorder())
    assert await provider.identity_now() == report.target


async def test_identity_now_names_each_container_when_they_run_different_images(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    docker_host: str,
    docker_client: aiodocker.Docker,
) -> None:
    project = unique_project()
    await compose_container(project, "backend", "v1.2.4")
    second = shared.compose_config(
        project,
        "backend",
        f"{BACKEND}:v1.2.3",
        {"PORT": str(free_port())},
        labels={"com.docker.compose.container-number": "2"},
    )
    await docker_client.containers.create(second, name=f"{project}-backend-2")
    provider = make_compose_provider(project)

    identity = await provider.identity_now()

    ids = {t: image_json(docker_host, f"{BACKEND}:{t}")["Id"] for t in ("v1.2.3", "v1.2.4")}
    assert identity.version == "v1.2.4, v1.2.3"
    assert identity.exact == (
        f"{project}-backend-1: {ids['v1.2.4']} (from {BACKEND}:v1.2.4); "
        f"{project}-backend-2: {ids['v1.2.3']} (from {BACKEND}:v1.2.3)"
    )


async def test_a_tag_missing_with_pulling_off_is_an_unknown_version(
    compose_container: ComposeContainerFactory, make_compose_provider: ComposeProviderFactory
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    provider = make_compose_provider(container.project)

    with pytest.raises(NotFound) as unknown:
        await provider.preflight("v0.0.1")

    assert "Tag `v0.0.1` of rollbot-test/backend not found on this host" in unknown.value.message


# -- what changes -----------------------------------------------------------------------


async def test_changes_name_env_names_ports_and_command_never_values(
    config_images: str,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
) -> None:
    container = await compose_container(
        unique_project(), "backend", "v2", repository=config_images, env={"APP_KEY": SECRET_VALUE}
    )
    provider = make_compose_provider(container.project)

    report = await provider.preflight("v1")

    assert report.changes == EXPECTED_CHANGES
    assert_one_line_without(report, SECRET_VALUE, "OLD_KEY=1")


async def test_a_command_the_service_sets_is_kept_so_it_does_not_change(
    config_images: str,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
) -> None:
    cmd = ["/bin/sh", "-c", "exec httpd -f -p $PORT -h /www"]
    container = await compose_container(
        unique_project(),
        "backend",
        "v2",
        repository=config_images,
        env={"OLD_KEY": "set-by-the-service"},
        cmd=cmd,
    )
    provider = make_compose_provider(container.project)

    report = await provider.preflight("v1")

    # OLD_KEY is the service's own (another value than the image's): it stays.
    assert report.changes == ["env names added: FEATURE_X", "ports: 8080/tcp -> 8081/tcp"]


# -- the compose file -------------------------------------------------------------------

COMPOSE_FILE = """\
services:
  backend:
    image: rollbot-test/backend:${BACKEND_TAG:-v1.2.4}
"""


@pytest.fixture
async def filed_backend(
    compose_container: ComposeContainerFactory, tmp_path: Path
) -> ComposeContainer:
    """A backend on v1.2.4 whose labels name a compose file reading BACKEND_TAG from .env."""
    (tmp_path / "compose.yaml").write_text(COMPOSE_FILE)
    (tmp_path / ".env").write_text("BACKEND_TAG=v1.2.4\n")
    labels = {
        "com.docker.compose.project.config_files": str(tmp_path / "compose.yaml"),
        "com.docker.compose.project.working_dir": str(tmp_path),
    }
    return await compose_container(unique_project(), "backend", "v1.2.4", labels=labels)


async def test_compose_file_warns_when_it_still_names_the_bad_tag(
    filed_backend: ComposeContainer,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    provider = make_compose_provider(filed_backend.project)

    report = await provider.preflight("v1.2.3")

    assert by_name(report)["compose-file"] == (
        Verdict.WARN,
        f"The compose file {tmp_path / 'compose.yaml'} still names {BACKEND}:v1.2.4; pin "
        f"`image: {BACKEND}:v1.2.3` (or set BACKEND_TAG=v1.2.3, the variable it reads) before "
        f"the next `docker compose up -d`, or that run brings {BACKEND}:v1.2.4 back.",
    )


async def test_compose_file_passes_when_the_pin_makes_it_name_the_target(
    filed_backend: ComposeContainer,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    env = tmp_path / ".env"
    provider = make_compose_provider(
        filed_backend.project, pin_env_file=env, pin_variable="BACKEND_TAG"
    )

    report = await provider.preflight("v1.2.3")

    assert by_name(report)["compose-file"] == (
        Verdict.PASS,
        f"Once the rollback sets BACKEND_TAG=v1.2.3 in {env}, the compose file "
        f"{tmp_path / 'compose.yaml'} names {BACKEND}:v1.2.3.",
    )
    assert env.read_text() == "BACKEND_TAG=v1.2.4\n"


async def test_compose_file_warns_when_the_pin_is_not_what_it_reads(
    filed_backend: ComposeContainer,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    provider = make_compose_provider(
        filed_backend.project, pin_env_file=tmp_path / ".env", pin_variable="OTHER_TAG"
    )

    report = await provider.preflight("v1.2.3")

    verdict, why = by_name(report)["compose-file"]
    assert verdict is Verdict.WARN
    assert f"still names {BACKEND}:v1.2.4" in why
