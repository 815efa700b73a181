"""A survivor takes over a rollback whose replica died, at each point a SIGKILL can land.

Each test leaves the store and the real Docker Compose service exactly as a process killed
at that point leaves them (its lease held by a process that is gone, a step marked
running, a container swap cut short), then sweeps from a second engine on the same store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiodocker
import pytest
import structlog
from structlog.testing import capture_logs

from bot.config import parse_config
from bot.engine import Engine
from bot.leases import Owner, this_process
from bot.models import Lock, Rollback, State, StepStatus
from bot.pool import ProviderPool
from bot.states import Trigger
from bot.store import Store
from bot.store.postgres import PostgresStore
from bot.tracing import traced
from tests.e2e_helpers import backend_config, running_image
from tests.support.docker import ComposeContainer, ComposeContainerFactory, unique_project
from tests.support.migrations import PgDatabaseFactory
from tests.support.proxy import tcp_proxy
from tests.support.services import HttpServerFactory
from tests.test_engine import Transcript, approved, dead_pid, make_engine


@pytest.fixture
async def backend(compose_container: ComposeContainerFactory) -> ComposeContainer:
    return await compose_container(unique_project(), "backend", "v1.2.4")


@pytest.fixture
async def engines(store: Store, backend: ComposeContainer) -> AsyncIterator[tuple[Engine, Engine]]:
    """The engine of a replica that dies, and the survivor's, on one store and machine."""
    me = this_process()
    gone = Owner(me.boot, me.host, pid=dead_pid(), nonce="0000dead")
    crashed = await make_engine(store, backend, owner=gone)
    survivor = await make_engine(store, backend, owner=me)
    yield crashed, survivor
    await crashed.providers.aclose()
    await survivor.providers.aclose()


async def started(engine: Engine) -> Rollback:
    """Approve v1.2.3 and start it, its step marked running: then the process dies."""
    rb = await approved(engine)
    rb = await engine.apply(rb, Trigger.START, "rollbot", "Rolling back")
    return await engine._set_step(rb.id, 0, status=StepStatus.RUNNING)


async def taken_over(survivor: Engine, rb: Rollback) -> tuple[Rollback, Transcript]:
    """Sweep from the survivor and wait for the resumed run to end."""
    said = Transcript()
    assert await survivor.sweep(said) == []  # nothing ends at once: it goes on
    await survivor.drain(120, 10)
    return await survivor.get(rb.id), said


async def test_killed_before_the_provider_call(
    engines: tuple[Engine, Engine], store: Store, docker_host: str, backend: ComposeContainer
) -> None:
    crashed, survivor = engines
    rb = await approved(crashed)  # approved, lease taken; the process dies before it starts
    done, said = await taken_over(survivor, rb)
    assert done.state is State.SUCCEEDED, said.lines
    image, _ = await running_image(docker_host, backend.project)
    assert image.endswith(":v1.2.3")
    assert any("Taken over" in line and "had not started" in line for line in said.lines)
    assert await store.locks() == []
    actions = [e.action for e in await store.audit_log(rb.id)]
    assert actions.count("resumed") == 1 and actions[-2:] == ["succeeded", "frozen"]
    assert "started" not in actions  # the dead replica never started it


async def test_killed_inside_the_swap_puts_the_old_container_back_and_runs_again(
    engines: tuple[Engine, Engine], store: Store, docker_host: str, backend: ComposeContainer
) -> None:
    crashed, survivor = engines
    rb = await started(crashed)
    # The swap was cut short after the old container was stopped and renamed aside,
    # before the new one took its name: the service is down.
    async with aiodocker.Docker(url=docker_host) as docker:
        old = docker.containers.container(backend.id)
        await old.stop(t=1)
        await old.rename(f"{backend.name}_rollbot_old_{backend.id[:12]}")
    done, said = await taken_over(survivor, rb)
    assert done.state is State.SUCCEEDED, said.lines
    image, info = await running_image(docker_host, backend.project)
    assert image.endswith(":v1.2.3") and info["Name"] == f"/{backend.name}"
    text = "\n".join(said.lines)
    assert "Put the old" in text and "running it again" in text
    assert await store.locks() == []


async def test_killed_after_the_swap_verifies_what_the_platform_runs(
    engines: tuple[Engine, Engine], store: Store, docker_host: str, backend: ComposeContainer
) -> None:
    crashed, survivor = engines
    rb = await started(crashed)
    # The provider finished the swap; the process died before it recorded the step done.
    target = crashed.providers.step("backend", "production", 0)
    await target.rollback("v1.2.3", lambda text: _nothing())
    done, said = await taken_over(survivor, rb)
    assert done.state is State.SUCCEEDED, said.lines
    assert done.steps[0].status is StepStatus.DONE
    assert any("already runs v1.2.3" in line for line in said.lines)
    actions = [e.action for e in await store.audit_log(rb.id)]
    assert actions.count("started") == 1 and actions.count("resumed") == 1


async def test_killed_in_verification_verifies_again(
    engines: tuple[Engine, Engine], store: Store, docker_host: str
) -> None:
    crashed, survivor = engines
    rb = await started(crashed)
    target = crashed.providers.step("backend", "production", 0)
    await target.rollback("v1.2.3", lambda text: _nothing())
    rb = await crashed._set_step(rb.id, 0, status=StepStatus.DONE)
    rb = await crashed.apply(rb, Trigger.VERIFY, "rollbot", None)
    done, said = await taken_over(survivor, rb)
    assert done.state is State.SUCCEEDED, said.lines
    assert any("Every step had finished" in line for line in said.lines)
    assert await store.locks() == []


async def test_what_cannot_be_told_apart_is_marked_interrupted_with_the_real_state(
    engines: tuple[Engine, Engine], store: Store, docker_host: str, backend: ComposeContainer
) -> None:
    crashed, survivor = engines
    rb = await started(crashed)
    # Someone deployed another version meanwhile: neither the old one nor the target.
    target = crashed.providers.step("backend", "production", 0)
    await target.rollback("v1.2.2", lambda text: _nothing())
    done, _ = await taken_over(survivor, rb)
    assert done.state is State.INTERRUPTED
    assert done.target_state and "v1.2.2" in done.target_state
    image, _ = await running_image(docker_host, backend.project)
    assert image.endswith(":v1.2.2")  # left as found: nothing is guessed
    assert await store.locks() == []


async def _nothing() -> None:
    return None


class FinishesWhileSwept:
    """The store as a sweeping replica meets it: another replica finishes a rollback
    between the sweep's read of the rollbacks and its read of the leases."""

    def __init__(self, store: Store, finish: Callable[[], Awaitable[object]]) -> None:
        self._store = store
        self._finish: Callable[[], Awaitable[object]] | None = finish

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def locks(self, *, expired: bool = False) -> list[Lock]:
        if self._finish is not None:
            finish, self._finish = self._finish, None
            await finish()
        return await self._store.locks(expired=expired)


async def test_a_rollback_finished_while_swept_is_not_taken_over(
    store: Store, backend: ComposeContainer
) -> None:
    runner = await make_engine(store, backend, owner=Owner("boot", "replica-a", 1, "a"))
    sweeper = None
    try:
        rb = await approved(runner)
        racing = FinishesWhileSwept(store, lambda: runner.execute(rb.id, Transcript()))
        sweeper = await make_engine(racing, backend, owner=Owner("boot", "replica-b", 1, "b"))  # type: ignore[arg-type]
        assert await sweeper.sweep(Transcript()) == []
        await sweeper.drain(30, 5)
        done = await store.get(rb.id)
        assert done is not None and done.state is State.SUCCEEDED
        assert await store.locks() == []  # the service is free at once, not after a TTL
        actions = [e.action for e in await store.audit_log(rb.id)]
        assert "resumed" not in actions and "interrupted" not in actions
    finally:
        await runner.providers.aclose()
        if sweeper is not None:
            await sweeper.providers.aclose()


async def test_a_database_lost_mid_run_leaves_the_rollback_to_a_takeover(
    pg_database: PgDatabaseFactory, backend: ComposeContainer, http_server: HttpServerFactory
) -> None:
    url = urlsplit(await pg_database())
    health = await http_server(503, "starting")
    data = backend_config(backend.project, backend.port)
    data["services"]["backend"]["environments"]["production"]["checks"] = [
        {"name": "health", "type": "http", "url": health.url}
    ]
    data["runtime"] |= {
        "lock_ttl_seconds": 3,
        "verify_deadline_seconds": 60,
        "verify_interval_seconds": 0.2,
    }
    config = parse_config(data)
    async with tcp_proxy([(url.hostname or "127.0.0.1", url.port or 5432)]) as proxy:
        through = url._replace(netloc=f"postgres@127.0.0.1:{proxy.port}").geturl()
        async with PostgresStore(f"{through}?connect_timeout=1") as store:
            engine = Engine(config, store, ProviderPool(config), owner=this_process())
            try:
                rb = await approved(engine)
                running = asyncio.ensure_future(engine.execute(rb.id, Transcript()))
                while (await store.get(rb.id)).state is not State.VERIFYING:  # type: ignore[union-attr]
                    await asyncio.sleep(0.05)
                # The database goes away while the checks wait; then they pass, and the
                # run cannot record it.
                proxy.cut()
                health.set(200, "ok")
                assert await running is None  # no error for the approver's click
                proxy.restore()
                left = await store.get(rb.id)
                assert left is not None and left.state is State.VERIFYING
                assert rb.id not in engine.leases
                actions = [e.action for e in await store.audit_log(rb.id)]
                assert "interrupted" not in actions

                # Once its lease lapses, a sweep (here, the same replica's) goes on with it.
                await asyncio.sleep(3.5)
                assert await engine.sweep(Transcript()) == []
                await engine.drain(60, 5)
                done = await store.get(rb.id)
                assert done is not None and done.state is State.SUCCEEDED
                assert await store.locks() == []
                actions = [e.action for e in await store.audit_log(rb.id)]
                assert actions.count("resumed") == 1 and "interrupted" not in actions
            finally:
                await engine.providers.aclose()


async def test_a_resumed_run_logs_a_trace_of_its_own_naming_the_request(
    engines: tuple[Engine, Engine], backend: ComposeContainer
) -> None:
    crashed, survivor = engines
    with traced("slack command /rollback", root=True) as requested:
        rb = await approved(crashed)
    # A sweep runs beside a later request: the run it resumes is a trace of its own.
    with (
        traced("slack command /rollback", root=True) as sweeping,
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs,
    ):
        done, said = await taken_over(survivor, rb)
    assert done.state is State.SUCCEEDED, said.lines
    calls = [line for line in logs if line.get("provider") == "docker_compose"]
    assert calls and {line["rollback_id"] for line in calls} == {rb.id}
    (trace_id,) = {line["trace_id"] for line in calls}
    assert trace_id not in {requested, sweeping}
    assert {line["requested_trace_id"] for line in calls} == {requested}
    assert (await survivor.get(rb.id)).trace_id == requested
