"""Pulls from a private registry that requires a login (a real `registry` on 127.0.0.1)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from providers.base import AuthRejected
from providers.registry_auth import credentials_for, registry_of
from tests.support.docker import (
    ComposeContainerFactory,
    ComposeProviderFactory,
    DemoImages,
    docker_cli,
    wait_http,
)
from tests.support.progress import Recorder

USER = "rollbot-test"


@dataclass(frozen=True)
class PrivateImage:
    """A repository whose v1.2.3 only the registry holds; v1.2.4 is on the host too."""

    registry: str
    password: str
    repository: str


@pytest.fixture(scope="session")
def registry_address() -> str:
    """Return the address of the registry scripts/start-registry.sh runs; fail if it is down."""
    address = os.environ.get("ROLLBOT_TEST_REGISTRY", "127.0.0.1:55050")
    try:
        urllib.request.urlopen(f"http://{address}/v2/", timeout=5)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return address
    except OSError:
        pass
    pytest.fail(f"No registry requiring a login at {address}: run scripts/start-registry.sh")


def config_with(folder: Path, auths: dict[str, object]) -> Path:
    """Write a Docker config.json holding `auths` into `folder` and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"auths": auths}))
    return folder


def basic(user: str, password: str) -> str:
    """Return the `auth` field docker login writes."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def private_image(
    registry_address: str, docker_host: str, demo_images: DemoImages, tmp_path: Path
) -> Iterator[PrivateImage]:
    """Push v1.2.3 of a fresh repository to the registry and drop it from the host."""
    password = os.environ.get("ROLLBOT_TEST_REGISTRY_PASSWORD", "rollbot-test-pw")
    repository = f"{registry_address}/rollbot-test/private{secrets.token_hex(3)}"
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
    for tag in ("v1.2.3", "v1.2.4"):
        docker_cli(
            docker_host, "tag", demo_images.ref(demo_images.backend, tag), f"{repository}:{tag}"
        )
    docker_cli(docker_host, "--config", str(login), "push", f"{repository}:v1.2.3")
    docker_cli(docker_host, "rmi", f"{repository}:v1.2.3")
    yield PrivateImage(registry_address, password, repository)
    for tag in ("v1.2.3", "v1.2.4"):
        try:
            docker_cli(docker_host, "rmi", f"{repository}:{tag}")
        except pytest.fail.Exception:
            pass


async def test_a_pull_without_credentials_says_the_registry_wants_them(
    private_image: PrivateImage,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    repo = private_image.repository
    container = await compose_container(
        private_image.repository.split("/")[-1], "backend", "v1.2.4", repository=repo
    )
    provider = make_compose_provider(container.project, pull=True, docker_config=tmp_path / "empty")

    with pytest.raises(AuthRejected) as refused:
        await provider.rollback("v1.2.3", Recorder())

    registry = private_image.registry
    assert refused.value.message == (
        f"The registry {registry} refused: credentials needed (`docker login {registry}` as "
        "the bot's user, or set docker_config). Nothing was changed."
    )
    assert json.loads(await wait_http(f"{container.url}/health"))["version"] == "v1.2.4"
    assert await provider.current_version() == "v1.2.4"


async def test_a_pull_with_the_docker_config_credentials_runs_the_target(
    private_image: PrivateImage,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    registry, repo = private_image.registry, private_image.repository
    auths = {registry: {"auth": basic(USER, private_image.password)}}
    config = config_with(tmp_path / "docker", auths)
    container = await compose_container(repo.split("/")[-1], "backend", "v1.2.4", repository=repo)
    progress = Recorder()
    provider = make_compose_provider(container.project, pull=True, docker_config=config)

    outcome = await provider.rollback("v1.2.3", progress)

    assert f"now runs {repo}:v1.2.3" in outcome.summary
    assert f"Pulled {repo}:v1.2.3" in progress.text
    assert json.loads(await wait_http(f"{container.url}/health"))["version"] == "v1.2.3"
    assert private_image.password not in progress.text + "".join(outcome.notes)


async def test_rejected_credentials_name_where_they_came_from(
    private_image: PrivateImage,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    registry, repo = private_image.registry, private_image.repository
    config = config_with(tmp_path / "docker", {registry: {"auth": basic(USER, "not-it")}})
    container = await compose_container(repo.split("/")[-1], "backend", "v1.2.4", repository=repo)
    provider = make_compose_provider(container.project, pull=True, docker_config=config)

    with pytest.raises(AuthRejected) as refused:
        await provider.rollback("v1.2.3", Recorder())

    assert refused.value.message == (
        f"The registry {registry} rejected the credentials from {config}/config.json "
        f"(`docker login {registry}` as the bot's user, or set docker_config again). "
        "Nothing was changed."
    )
    assert "not-it" not in refused.value.message


async def test_a_credential_helper_is_run_as_a_program(
    private_image: PrivateImage,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-rbtest"
    answer = json.dumps(
        {"ServerURL": private_image.registry, "Username": USER, "Secret": private_image.password}
    )
    # A helper reads the server address on stdin and answers only for it.
    helper.write_text(
        "#!/bin/sh\nread addr\n"
        f'[ "$addr" = "{private_image.registry}" ] || '
        "{ echo 'credentials not found in native keychain'; exit 1; }\n"
        f"echo '{answer}'\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credsStore": "rbtest"}))
    repo = private_image.repository
    container = await compose_container(repo.split("/")[-1], "backend", "v1.2.4", repository=repo)
    provider = make_compose_provider(container.project, pull=True, docker_config=config)

    await provider.rollback("v1.2.3", Recorder())

    assert json.loads(await wait_http(f"{container.url}/health"))["version"] == "v1.2.3"
    # Another registry: the helper has nothing, and nothing is sent.
    assert await credentials_for("other.example:5000/app", config, 5) is None


async def test_config_entries_are_found_however_docker_login_filed_them(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        {
            "https://registry.example.com/v1/": {"auth": basic("u", "p:w")},
            "https://index.docker.io/v1/": {"identitytoken": "tok"},
        },
    )

    found = await credentials_for("registry.example.com/team/app", config, 5)
    hub = await credentials_for("library/nginx", config, 5)

    assert found is not None and found.fields == {
        "username": "u",
        "password": "p:w",
        "serveraddress": "registry.example.com",
    }
    assert hub is not None and hub.fields["identitytoken"] == "tok"
    assert "p:w" not in repr(found) and "tok" not in repr(hub)
    assert registry_of("localhost:5000/app") == "localhost:5000"
    assert registry_of("team/app") == "docker.io"
