"""Rollback drills on a real dockerd and store: back, verify, forward, verify; never production."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import parse_config
from bot.drill import Drills
from bot.engine import Engine
from bot.errors import Conflict, InvalidRequest, NotAllowed
from bot.models import Rollback, State
from bot.pool import ProviderPool
from bot.store.sqlite import SQLiteStore
from bot.verification import CheckResult
from tests.e2e_helpers import REQUESTER, backend_config, running_image
from tests.support.docker import (
    ComposeContainer,
    ComposeContainerFactory,
    unique_project,
    wait_http,
)
from tests.support.services import FakeHttpServer, HttpServerFactory


def drill_config(
    container: ComposeContainer, check_url: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Staging runs the container; production and a `production: true` qa run it too."""
    config = backend_config(container.project, container.port, **extra)
    config["runtime"] = {"verify_deadline_seconds": 2, "verify_interval_seconds": 0.2}
    staging = config["services"]["backend"]["environments"]["production"]
    if check_url is not None:
        staging["checks"] = [{"name": "health", "type": "http", "url": check_url}]
    config["services"]["backend"]["environments"] = {
        "staging": staging,
        "production": copy.deepcopy(staging),
        "qa": {**copy.deepcopy(staging), "production": True},
    }
    return config


class Watch:
    """A Reporter that, after each leg's verification, looks at what really runs."""

    def __init__(self, engine: Engine, docker_host: str, project: str) -> None:
        self.engine = engine
        self.docker_host = docker_host
        self.project = project
        self.lines: list[str] = []
        self.images: list[str] = []
        self.locked: list[bool] = []
        self.refused: list[str] = []
        self.server: FakeHttpServer | None = None  # turned bad after the first leg

    async def progress(self, rollback: Rollback, text: str) -> None:
        self.lines.append(text)

    async def verified(self, rollback: Rollback, results: list[CheckResult]) -> None:
        self.lines += [f"{r.name}: {'ok' if r.ok else 'FAIL'}" for r in results]
        image, _ = await running_image(self.docker_host, self.project)
        self.images.append(image.rsplit(":", 1)[1])
        self.locked.append(
            [lock.rollback_id for lock in await self.engine.store.locks()] == [rollback.id]
        )
        try:
            await self.engine.request(
                service="backend", version=None, environment="staging", user="U_OTHER"
            )
        except Conflict as exc:
            self.refused.append(exc.message)
        if self.server is not None:
            self.server.set(503, "down")

    async def finished(self, rollback: Rollback, summary: str) -> None:
        self.lines.append(summary)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(str(tmp_path / "rollbot.db")) as opened:
        yield opened


@pytest.fixture
async def backend(compose_container: ComposeContainerFactory) -> ComposeContainer:
    return await compose_container(unique_project(), "backend", "v1.2.4")


@pytest.fixture
async def engines(store: SQLiteStore) -> AsyncIterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        await engine.providers.aclose()


def make_engine(engines: list[Engine], store: SQLiteStore, config: dict[str, Any]) -> Engine:
    parsed = parse_config(config)
    engine = Engine(parsed, store, ProviderPool(parsed))
    engines.append(engine)
    return engine


async def test_drill_goes_back_and_forth_holding_the_lock(
    store: SQLiteStore, backend: ComposeContainer, engines: list[Engine], docker_host: str
) -> None:
    engine = make_engine(engines, store, drill_config(backend))
    drills = Drills(engine)
    watch = Watch(engine, docker_host, backend.project)

    started = await drills.start(service="backend", environment=None, user=REQUESTER)
    assert started.environment == "staging" and started.drill
    assert (started.current_version, started.target_version) == ("v1.2.4", "v1.2.3")
    assert started.state is State.APPROVED
    assert [lock.rollback_id for lock in await store.locks()] == [started.id]

    done = await drills.run(started.id, watch)

    assert done is not None and done.state is State.SUCCEEDED
    assert watch.images == ["v1.2.3", "v1.2.4"]  # what ran after each leg's verification
    assert watch.locked == [True, True]
    assert len(watch.refused) == 2 and "already has rollback" in watch.refused[0]
    image, _ = await running_image(docker_host, backend.project)
    assert image.endswith(":v1.2.4")
    assert '"version":"v1.2.4"' in await wait_http(f"{backend.url}/health")
    assert await store.locks() == []

    (stored,) = await store.find()
    assert stored.drill and stored.state is State.SUCCEEDED
    assert stored.drill_back_seconds is not None and stored.drill_back_seconds > 0
    assert stored.drill_forward_seconds is not None and stored.drill_forward_seconds > 0
    kinds = [e.kind for e in await store.events(stored.id)]
    assert kinds[:2] == ["requested", "approved"]
    assert kinds.index("drill_back") < kinds.index("drill_forward") < kinds.index("succeeded")
    assert any(
        line.startswith("Leg 1/2: rolling backend/staging back to v1.2.3") for line in watch.lines
    )
    assert any(
        line.startswith("Leg 2/2: rolling backend/staging forward to v1.2.4")
        for line in watch.lines
    )
    assert "passed" in watch.lines[-1] and "v1.2.4 again" in watch.lines[-1]


async def test_drill_refuses_production_and_changes_nothing(
    store: SQLiteStore, backend: ComposeContainer, engines: list[Engine], docker_host: str
) -> None:
    config = drill_config(backend, requesters={"users": [REQUESTER]})
    engine = make_engine(engines, store, config)
    drills = Drills(engine)

    with pytest.raises(NotAllowed, match="Drills never run in a protected environment"):
        await drills.start(service="backend", environment="production", user=REQUESTER)
    with pytest.raises(NotAllowed, match="backend/qa is protected"):
        await drills.start(service="backend", environment="qa", user=REQUESTER)
    with pytest.raises(NotAllowed, match="not allowed to run drills"):
        await drills.start(service="backend", environment="staging", user="U_X")
    with pytest.raises(InvalidRequest, match="Unknown service 'nope'"):
        await drills.start(service="nope", environment=None, user=REQUESTER)

    del config["services"]["backend"]["environments"]["staging"]
    without_staging = Drills(make_engine(engines, store, config))
    with pytest.raises(
        InvalidRequest, match=r"no staging environment; name .*\(it has only protected ones\)"
    ):
        await without_staging.start(service="backend", environment=None, user=REQUESTER)

    assert await store.find() == []
    assert await store.locks() == []
    image, _ = await running_image(docker_host, backend.project)
    assert image.endswith(":v1.2.4")


async def test_drill_refused_while_the_service_is_busy(
    store: SQLiteStore, backend: ComposeContainer, engines: list[Engine]
) -> None:
    engine = make_engine(engines, store, drill_config(backend))
    open_rollback = await engine.request(
        service="backend", version="v1.2.3", environment="staging", user=REQUESTER
    )
    with pytest.raises(Conflict, match=f"already has rollback {open_rollback.id}"):
        await Drills(engine).start(service="backend", environment=None, user=REQUESTER)
    assert [rb.id for rb in await store.find()] == [open_rollback.id]


async def test_drill_stops_when_the_way_back_fails(
    store: SQLiteStore,
    backend: ComposeContainer,
    engines: list[Engine],
    http_server: HttpServerFactory,
    docker_host: str,
) -> None:
    server = await http_server(503, "down")
    engine = make_engine(engines, store, drill_config(backend, server.url))
    drills = Drills(engine)
    watch = Watch(engine, docker_host, backend.project)

    started = await drills.start(service="backend", environment="staging", user=REQUESTER)
    done = await drills.run(started.id, watch)

    assert done is not None and done.state is State.FAILED
    assert watch.images == ["v1.2.3"]  # it went back, then the checks failed: no second leg
    assert done.drill_back_seconds is None and done.drill_forward_seconds is None
    assert done.target_state is not None and "v1.2.3" in done.target_state
    text = watch.lines[-1]
    assert "failed going back (leg 1/2)" in text
    assert "Verification failed: health" in text
    assert "`/rollback backend v1.2.4 env=staging`" in text
    assert "rollback path does not work" in text
    assert await store.locks() == []


async def test_drill_stops_when_the_way_forward_fails(
    store: SQLiteStore,
    backend: ComposeContainer,
    engines: list[Engine],
    http_server: HttpServerFactory,
    docker_host: str,
) -> None:
    server = await http_server(200, "ok")
    engine = make_engine(engines, store, drill_config(backend, server.url))
    drills = Drills(engine)
    watch = Watch(engine, docker_host, backend.project)
    watch.server = server

    started = await drills.start(service="backend", environment="staging", user=REQUESTER)
    done = await drills.run(started.id, watch)

    assert done is not None and done.state is State.FAILED
    assert watch.images == ["v1.2.3", "v1.2.4"]
    assert done.drill_back_seconds is not None and done.drill_forward_seconds is None
    assert done.target_state is not None and "v1.2.4" in done.target_state
    text = watch.lines[-1]
    assert "failed going forward (leg 2/2)" in text
    assert "coming forward again failed" in text
    assert await store.locks() == []
    kinds = [e.kind for e in await store.events(done.id)]
    assert "drill_back" in kinds and "drill_forward" not in kinds and kinds[-1] == "failed"
