"""The docker_compose provider's fault matrix: each engine call of a rollback x each bad answer.

A FaultProxy sits between the provider and the real engine socket. A one-off transient
fault on a read is retried and the rollback succeeds; any other fault fails the rollback
with a message that names its cause, and the state it reports is what the engine shows.
A failed removal of the replaced container leaves the rollback done and says so.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiodocker
import pytest

from providers.base import ProviderError
from tests.support.docker import (
    ComposeContainer,
    ComposeContainerFactory,
    ComposeProviderFactory,
    unique_project,
    wait_http,
)
from tests.support.faults import ALL_FAULTS, TRANSIENT, Fault, FaultProxy, assert_names_cause
from tests.support.progress import Recorder

# The engine calls a rollback makes: (kind, method, path regex, is a read).
CALLS = [
    ("list containers", "GET", r"/containers/json", True),
    ("inspect container", "GET", r"/containers/[^/]+/json", True),
    ("inspect image", "GET", r"/images/.+/json", True),
    ("create", "POST", r"/containers/create", False),
    ("stop", "POST", r"/containers/[^/]+/stop", False),
    ("rename", "POST", r"/containers/[^/]+/rename", False),
    ("start", "POST", r"/containers/[^/]+/start", False),
    ("remove old", "DELETE", r"/containers/{old_id}", False),
]


@pytest.fixture
async def proxy(docker_host: str) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the engine socket; it holds a 'timeout' longer than 1 s."""
    async with FaultProxy(docker_host, hang_seconds=2.5) as started:
        yield started


async def version_of(container: ComposeContainer) -> str:
    """Return the version the service answers on /health."""
    return str(json.loads(await wait_http(f"{container.url}/health"))["version"])


async def engine_view(docker: aiodocker.Docker, container: ComposeContainer) -> tuple[str, bool]:
    """Return (image, running) of the service's container as the engine shows it."""
    shown = await docker.containers.container(container.name).show()
    return shown["Config"]["Image"], bool(shown["State"]["Running"])


@pytest.mark.parametrize(("kind", "method", "path", "read"), CALLS, ids=[c[0] for c in CALLS])
@pytest.mark.parametrize("fault", ALL_FAULTS, ids=[f.name.lower() for f in ALL_FAULTS])
async def test_fault_matrix(
    fault: Fault,
    kind: str,
    method: str,
    path: str,
    read: bool,
    proxy: FaultProxy,
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    docker_client: aiodocker.Docker,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    settings = {
        "api_timeout_seconds": 1,
        "stop_timeout_seconds": 0,
        "settle_seconds": 0.5,
        "healthy_timeout_seconds": 10,
    }
    provider = make_compose_provider(container.project, docker_host=proxy.url, **settings)
    direct = make_compose_provider(container.project)
    proxy.inject(fault, method=method, path=path.format(old_id=container.id))
    progress = Recorder()

    try:
        await provider.rollback("v1.2.3", progress)
    except ProviderError as exc:
        assert not (read and fault in TRANSIENT), f"a one-off {fault} on a read was not retried"
        assert kind != "remove old", "a failed removal of the old container failed the rollback"
        assert_names_cause(fault, exc.message)
        stated = exc.target_state or await direct.describe_state()
        image, running = await engine_view(docker_client, container)
        assert image in stated
        said_running = "running" in stated or (" runs " in stated and "stopped" not in stated)
        assert said_running == running, stated
        # Whatever was left half-done, reconcile() leaves the service running one container.
        await direct.reconcile()
        names = [
            c["Names"][0]
            for c in await docker_client.containers.list(
                all=True,
                filters=json.dumps({"label": [f"com.docker.compose.project={container.project}"]}),
            )
        ]
        assert names == [f"/{container.name}"]
        assert (await engine_view(docker_client, container))[1]
    else:
        assert proxy.faulted, f"no {method} {path} call was made"
        assert await version_of(container) == "v1.2.3"
        if kind == "remove old" and "Removed the old container" not in progress.text:
            # aiohttp sends an idempotent DELETE again on a reset connection; else it is said.
            assert_names_cause(fault, progress.text)
