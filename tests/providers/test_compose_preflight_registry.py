"""docker_compose preflight of a target only a registry holds (a login or a token needed)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import pytest

import tests.providers.test_compose_registry as registry_tests
from playground.world import free_port
from providers.capabilities import PreflightReport, Verdict
from providers.docker_compose import DockerComposeProvider
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
    DemoImages,
    docker_cli,
    unique_project,
)
from tests.support.progress import Recorder
from tests.support.token_registry import TokenRegistry

config_images = compose_preflight.config_images
registry_address = registry_tests.registry_address
USER = registry_tests.USER


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
    async with TokenRegistry(
        user="robot", password="tok3n-pw!", identity_token="id-t0ken"
    ) as registry:
        yield registry


@pytest.fixture
def token_image(
    token_registry: TokenRegistry, docker_host: str, demo_images: DemoImages
) -> Iterator[str]:
    """Publish team/app:v1.2.3 (one more env name) on the token registry; v1.2.4 is local."""
    repository = f"{token_registry.address}/team/app"
    demo = image_json(docker_host, demo_images.ref(BACKEND, "v1.2.3"))
    config = {**demo["Config"], "Env": ["NEW_ONE=1"]}
    token_registry.add("team/app", "v1.2.3", config, architecture=demo["Architecture"])
    docker_cli(docker_host, "tag", demo_images.ref(BACKEND, "v1.2.4"), f"{repository}:v1.2.4")
    yield repository
    docker_cli(docker_host, "rmi", f"{repository}:v1.2.4")


async def token_preflight(
    entry: dict[str, str],
    registry: TokenRegistry,
    repository: str,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    folder: Path,
) -> PreflightReport:
    """Preflight v1.2.3 of the token registry's repository with one `auths` entry."""
    docker_config = registry_tests.config_with(folder, {registry.address: entry})
    container = await compose_container(
        unique_project(), "backend", "v1.2.4", repository=repository
    )
    provider: DockerComposeProvider = make_compose_provider(
        container.project, pull=True, docker_config=docker_config
    )
    return await provider.preflight("v1.2.3")


async def test_a_bearer_challenge_is_answered_with_a_token_from_its_realm(
    token_registry: TokenRegistry,
    token_image: str,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    # A registry's bad minute on the manifest read is retried away.
    token_registry.fail_manifests = 1
    entry = {"auth": registry_tests.basic("robot", "tok3n-pw!")}

    report = await token_preflight(
        entry, token_registry, token_image, compose_container, make_compose_provider, tmp_path
    )

    digest = token_registry.digest("team/app", "v1.2.3")
    assert by_name(report)["image-pullable"][0] is Verdict.PASS
    assert report.target.exact == f"{digest} (from {token_image}:v1.2.3)"
    # The platform's manifest of the index was read: not the other platform's config.
    assert report.changes == ["env names added: NEW_ONE"]
    assert token_registry.scopes == ["repository:team/app:pull"]


async def test_an_identity_token_is_traded_for_a_pull_token(
    token_registry: TokenRegistry,
    token_image: str,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    report = await token_preflight(
        {"identitytoken": "id-t0ken"},
        token_registry,
        token_image,
        compose_container,
        make_compose_provider,
        tmp_path,
    )

    assert by_name(report)["image-pullable"][0] is Verdict.PASS
    assert token_registry.scopes == ["repository:team/app:pull"]


async def test_a_realm_that_refuses_the_credentials_fails_image_pullable(
    token_registry: TokenRegistry,
    token_image: str,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    entry = {"auth": registry_tests.basic("robot", "wr0ng-pw")}

    report = await token_preflight(
        entry, token_registry, token_image, compose_container, make_compose_provider, tmp_path
    )

    assert by_name(report)["image-pullable"] == (
        Verdict.FAIL,
        f"The registry {token_registry.address} rejected the credentials from "
        f"{tmp_path}/config.json.",
    )
    assert_one_line_without(report, "wr0ng-pw")
