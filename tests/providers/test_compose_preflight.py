"""docker_compose preflight on a real Docker Engine and a real registry that requires a login."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import pytest

import tests.providers.test_compose_registry as registry_tests
from playground import images as shared
from playground.world import free_port
from providers.base import NotFound
from providers.capabilities import Describe, Preflight, PreflightReport, Verdict
from providers.docker_compose import DockerComposeProvider
from tests.support.docker import (
    ComposeContainer,
    ComposeContainerFactory,
    ComposeProviderFactory,
    DemoImages,
    docker_cli,
    unique_project,
)
from tests.support.progress import Recorder
from tests.support.token_registry import TokenRegistry

registry_address = registry_tests.registry_address
USER = registry_tests.USER
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


@pytest.fixture(scope="module")
def config_images(docker_host: str, demo_images: DemoImages) -> str:
    """Build `rollbot-test/pfconfig:v1` (target) and `:v2` (current) unless they exist."""
    repository = "rollbot-test/pfconfig"
    base = demo_images.ref(demo_images.backend, "v1.2.3")
    for tag, lines in (("v1", TARGET_CHANGES), ("v2", CURRENT_CHANGES)):
        ref = f"{repository}:{tag}"
        try:
            image_json(docker_host, ref)
        except pytest.fail.Exception:
            build(docker_host, ref, base, lines)
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


# -- a target only the registry holds ---------------------------------------------------


@dataclass(frozen=True)
class Pushed:
    """v1 of a repository only the registry holds; v2 is pushed and on the host too."""

    registry: str
    password: str
    repository: str
    v1_digest: str
    v2_digest: str


@pytest.fixture
def pushed(
    registry_address: str, docker_host: str, config_images: str, tmp_path: Path
) -> Iterator[Pushed]:
    """Push v1 and v2 of the config images to a fresh repository; drop v1 from the host."""
    password = os.environ.get("ROLLBOT_TEST_REGISTRY_PASSWORD", "rollbot-test-pw")
    repository = f"{registry_address}/rollbot-test/pf{secrets.token_hex(3)}"
    login = tmp_path / "login"
    docker_cli(
        docker_host,
        "--config",
        str(login),
        "login",
        "-u",
        USER,
        "--password-stdin",
        registry_address,
        stdin=password.encode(),
    )
    digests: dict[str, str] = {}
    for tag in ("v1", "v2"):
        docker_cli(docker_host, "tag", f"{config_images}:{tag}", f"{repository}:{tag}")
        docker_cli(docker_host, "--config", str(login), "push", f"{repository}:{tag}")
        repo_digests = image_json(docker_host, f"{repository}:{tag}")["RepoDigests"]
        [digest] = [d.split("@")[1] for d in repo_digests if d.startswith(f"{repository}@")]
        digests[tag] = digest
    docker_cli(docker_host, "rmi", f"{repository}:v1")
    yield Pushed(registry_address, password, repository, digests["v1"], digests["v2"])
    for tag in ("v1", "v2"):
        try:
            docker_cli(docker_host, "rmi", f"{repository}:{tag}")
        except pytest.fail.Exception:
            pass


@pytest.fixture
async def pushed_container(
    pushed: Pushed, compose_container: ComposeContainerFactory
) -> ComposeContainer:
    """The service on v2 of the pushed repository."""
    return await compose_container(
        unique_project(), "backend", "v2", repository=pushed.repository, env={"A": SECRET_VALUE}
    )


async def test_a_target_in_the_registry_is_pullable_with_the_config_credentials(
    pushed: Pushed,
    pushed_container: ComposeContainer,
    make_compose_provider: ComposeProviderFactory,
    docker_client: aiodocker.Docker,
    tmp_path: Path,
) -> None:
    auths = {pushed.registry: {"auth": registry_tests.basic(USER, pushed.password)}}
    config = registry_tests.config_with(tmp_path / "docker", auths)
    provider = make_compose_provider(pushed_container.project, pull=True, docker_config=config)
    before = await engine_snapshot(docker_client, pushed_container.project, pushed.repository)

    report = await provider.preflight("v1")

    repo = pushed.repository
    assert report.current is not None
    assert report.current.exact == f"{pushed.v2_digest} (from {repo}:v2)"
    assert report.target.exact == f"{pushed.v1_digest} (from {repo}:v1)"
    checks = by_name(report)
    assert checks["image-present"] == (
        Verdict.WARN,
        f"{repo}:v1 is not on this host: the rollback pulls it first.",
    )
    assert checks["image-pullable"] == (
        Verdict.PASS,
        f"The registry {pushed.registry} has {repo}:v1 ({pushed.v1_digest[:19]}…).",
    )
    # Read from the image config the registry holds.
    assert report.changes == EXPECTED_CHANGES
    assert_one_line_without(report, pushed.password, SECRET_VALUE)
    assert (
        await engine_snapshot(docker_client, pushed_container.project, pushed.repository) == before
    )
    # What the card showed is what runs after the rollback.
    await provider.rollback("v1", Recorder())
    assert await provider.identity_now() == report.target


async def test_a_registry_that_wants_credentials_fails_image_pullable(
    pushed: Pushed,
    pushed_container: ComposeContainer,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    provider = make_compose_provider(
        pushed_container.project, pull=True, docker_config=tmp_path / "empty"
    )

    report = await provider.preflight("v1")

    registry = pushed.registry
    assert by_name(report)["image-pullable"] == (
        Verdict.FAIL,
        f"The registry {registry} wants credentials for {pushed.repository}: "
        f"`docker login {registry}` as the bot's user, or set docker_config.",
    )
    assert report.target.exact == f"{pushed.repository}:v1 (digest unknown)"
    assert report.changes == [
        f"env, ports and command: unknown until {pushed.repository}:v1 is pulled"
    ]


async def test_rejected_credentials_fail_image_pullable_without_the_secret(
    pushed: Pushed,
    pushed_container: ComposeContainer,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    auths = {pushed.registry: {"auth": registry_tests.basic(USER, "not-it-at-all")}}
    config = registry_tests.config_with(tmp_path / "docker", auths)
    provider = make_compose_provider(pushed_container.project, pull=True, docker_config=config)

    report = await provider.preflight("v1")

    assert by_name(report)["image-pullable"] == (
        Verdict.FAIL,
        f"The registry {pushed.registry} rejected the credentials from {config}/config.json.",
    )
    assert_one_line_without(report, "not-it-at-all")


async def test_a_tag_the_registry_lacks_fails_image_pullable(
    pushed: Pushed,
    pushed_container: ComposeContainer,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    auths = {pushed.registry: {"auth": registry_tests.basic(USER, pushed.password)}}
    config = registry_tests.config_with(tmp_path / "docker", auths)
    provider = make_compose_provider(pushed_container.project, pull=True, docker_config=config)

    report = await provider.preflight("v0")

    assert by_name(report)["image-pullable"] == (
        Verdict.FAIL,
        f"The registry {pushed.registry} has no {pushed.repository}:v0 (manifest unknown).",
    )


async def test_an_unreachable_registry_fails_image_pullable(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    docker_host: str,
    demo_images: DemoImages,
    tmp_path: Path,
) -> None:
    registry = f"127.0.0.1:{free_port()}"
    repository = f"{registry}/rollbot-test/gone"
    docker_cli(docker_host, "tag", demo_images.ref(BACKEND, "v1.2.4"), f"{repository}:v1.2.4")
    try:
        container = await compose_container(
            unique_project(), "backend", "v1.2.4", repository=repository
        )
        provider = make_compose_provider(
            container.project, pull=True, docker_config=tmp_path / "empty"
        )

        report = await provider.preflight("v1.2.3")
    finally:
        docker_cli(docker_host, "rmi", f"{repository}:v1.2.4")

    verdict, why = by_name(report)["image-pullable"]
    assert verdict is Verdict.FAIL
    assert why.startswith(f"Could not ask the registry {registry} for {repository}:v1.2.3: ")
    assert "cannot open a connection" in why


# -- token auth, as registries like Docker Hub, GHCR and ECR ask for it -----------------


@pytest.fixture
async def token_registry() -> AsyncIterator[TokenRegistry]:
    """A registry that answers 401 Bearer and hands out tokens for user/password."""
    async with TokenRegistry(user="robot", password="tok3n-pw!") as registry:
        yield registry


async def test_a_bearer_challenge_is_answered_with_a_token_from_its_realm(
    token_registry: TokenRegistry,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    docker_host: str,
    demo_images: DemoImages,
    tmp_path: Path,
) -> None:
    repository = f"{token_registry.address}/team/app"
    demo = image_json(docker_host, demo_images.ref(BACKEND, "v1.2.3"))
    config = {**demo["Config"], "Env": ["NEW_ONE=1"]}
    token_registry.add("team/app", "v1.2.3", config, architecture=demo["Architecture"])
    docker_cli(docker_host, "tag", demo_images.ref(BACKEND, "v1.2.4"), f"{repository}:v1.2.4")
    auths = {token_registry.address: {"auth": registry_tests.basic("robot", "tok3n-pw!")}}
    docker_config = registry_tests.config_with(tmp_path / "docker", auths)
    try:
        container = await compose_container(
            unique_project(), "backend", "v1.2.4", repository=repository
        )
        provider: DockerComposeProvider = make_compose_provider(
            container.project, pull=True, docker_config=docker_config
        )
        report = await provider.preflight("v1.2.3")
    finally:
        docker_cli(docker_host, "rmi", f"{repository}:v1.2.4")

    digest = token_registry.digest("team/app", "v1.2.3")
    assert by_name(report)["image-pullable"][0] is Verdict.PASS
    assert report.target.exact == f"{digest} (from {repository}:v1.2.3)"
    assert report.changes == ["env names added: NEW_ONE"]
    assert token_registry.scopes == ["repository:team/app:pull"]
