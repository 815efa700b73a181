"""A real Kubernetes control plane and the helm CLI, started by the test command.

Start them with `scripts/start-kube.sh` and run pytest with
`ROLLBOT_TEST_KUBECONFIG=/tmp/rollbot-kube/kubeconfig` and
`ROLLBOT_TEST_HELM=/tmp/rollbot-kube/bin/helm`. As with the other services, a missing or
unreachable API server fails the tests that need it instead of skipping them.

The cluster has one fake node (tests/support/fake_kubelet.py): pods become Ready at once,
except that an image containing `unpullable` sits in ImagePullBackOff and one containing
`crashloop` in CrashLoopBackOff.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

KUBECONFIG_VAR = "ROLLBOT_TEST_KUBECONFIG"
HELM_VAR = "ROLLBOT_TEST_HELM"
IMAGE_PULL_FAILS = "registry.example/unpullable:v1"
CRASH_LOOPS = "registry.example/crashloop:v1"


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    """Path of the test cluster's kubeconfig, checked: the API server says it is ready."""
    path = _required(KUBECONFIG_VAR)
    # Its own thread and loop: a session fixture must not touch the tests' event loops.
    with ThreadPoolExecutor(max_workers=1) as pool:
        error = pool.submit(asyncio.run, _readyz_error(path)).result()
    if error:
        pytest.fail(
            f"{KUBECONFIG_VAR} is set but the API server is not ready ({error}); "
            "start it with scripts/start-kube.sh",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def helm_binary() -> str:
    """Path of the helm CLI built by scripts/start-kube.sh."""
    path = _required(HELM_VAR)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{HELM_VAR}={path} is not an executable: run scripts/start-kube.sh", False)
    return path


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: start the cluster with scripts/start-kube.sh", False)
    return value


async def _readyz_error(path: str) -> str | None:
    try:
        api = await config.new_client_from_config(config_file=path)
        async with api:
            body = await _get_text(api, "/readyz")
    except (OSError, ApiException, config.ConfigException, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if body == "ok" else f"/readyz answered {body!r}"


async def _get_text(api: client.ApiClient, path: str) -> str:
    # Without preloading, call_api hands back the raw aiohttp response.
    response = await api.call_api(
        path, "GET", auth_settings=["BearerToken"], _preload_content=False, _request_timeout=5
    )
    try:
        return (await response.text()).strip()
    finally:
        response.release()


@pytest.fixture
async def kube_api(kubeconfig: str) -> AsyncIterator[client.ApiClient]:
    """A kubernetes_asyncio client of the test cluster, as its admin."""
    api = await config.new_client_from_config(config_file=kubeconfig)
    async with api:
        yield api


@pytest.fixture
async def kube_namespace(kube_api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace for this test; deleted (with all it holds) after it."""
    name = f"rollbot-test-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    # The namespace controller removes what it holds; no need to wait for it.
    await core.delete_namespace(name, propagation_policy="Background")


@dataclass(frozen=True)
class HelmResult:
    """What one helm command printed."""

    returncode: int
    stdout: str
    stderr: str


class Helm(Protocol):
    """Runs the helm CLI with arguments (never through a shell) against the test cluster."""

    def __call__(self, *args: str, check: bool = True) -> Awaitable[HelmResult]: ...


@pytest.fixture
def helm(helm_binary: str, kubeconfig: str, tmp_path: Path) -> Helm:
    """The helm CLI aimed at the test cluster, with its caches and config in tmp_path."""
    env: dict[str, Any] = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "KUBECONFIG": kubeconfig,
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
    }

    async def run(*args: str, check: bool = True) -> HelmResult:
        process = await asyncio.create_subprocess_exec(
            helm_binary,
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        except TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail(f"helm {' '.join(args)} took over 120 s")
        result = HelmResult(process.returncode or 0, out.decode(), err.decode())
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    return run
