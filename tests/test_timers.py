"""Timers across replicas: an expiry and a monitoring window fire once, whoever is alive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from bot.engine import Engine
from bot.jobs import Job, JobKind, JobState, job_id
from bot.leases import Owner
from bot.models import State, utcnow
from bot.scheduler import LEASE, Done, JobHandler, Scheduler
from bot.store import Store, open_store
from tests.support.docker import ComposeContainer, ComposeContainerFactory, unique_project
from tests.test_engine import make_engine, request
from tests.test_scheduler import FakeClock


@pytest.fixture
async def replicas(store_url: str) -> AsyncIterator[list[Store]]:
    """Three replicas' stores on the same data."""
    stores = [open_store(store_url) for _ in range(3)]
    for store in stores:
        await store.open()
    yield stores
    for store in stores:
        await store.close()


@pytest.fixture
async def backend(compose_container: ComposeContainerFactory) -> ComposeContainer:
    return await compose_container(unique_project(), "backend", "v1.2.4")


async def test_an_expiry_fires_once_when_every_replica_sweeps(
    replicas: list[Store], backend: ComposeContainer
) -> None:
    engines: list[Engine] = [
        await make_engine(store, backend, owner=Owner("boot", f"replica-{i}", 1, "n"))
        for i, store in enumerate(replicas)
    ]
    try:
        stale = await request(engines[0])
        await replicas[0].update(stale.id, created_at=utcnow() - timedelta(hours=2))
        swept = await asyncio.gather(*(engine.sweep() for engine in engines * 3))
        assert [rb.id for moved in swept for rb in moved] == [stale.id]
        assert (await engines[1].get(stale.id)).state is State.EXPIRED
        actions = [e.action for e in await replicas[2].audit_log(stale.id)]
        assert actions.count("expired") == 1
    finally:
        for engine in engines:
            await engine.providers.aclose()


async def test_a_monitoring_window_of_a_killed_replica_runs_once(
    replicas: list[Store], backend: ComposeContainer
) -> None:
    engine = await make_engine(replicas[0], backend)
    try:
        rb = await request(engine)
    finally:
        await engine.providers.aclose()
    clock = FakeClock(utcnow())
    job = Job(
        id=job_id(JobKind.MONITOR, rb.id), rollback_id=rb.id, kind=JobKind.MONITOR, due_at=clock.now
    )
    assert await replicas[0].schedule_job(job)
    # Replica 0 claims the run, then is killed: its claim is left running under a lease.
    dead = await replicas[0].claim_job(job.id, clock.now, LEASE)
    assert dead is not None
    runs: list[int] = []

    def handler(i: int) -> JobHandler:
        async def run(job: Job, now: datetime) -> Done:
            runs.append(i)
            return Done({"by": f"replica-{i}"})

        return run

    survivors = [
        Scheduler(store, {JobKind.MONITOR: handler(i)}, clock=clock)
        for i, store in enumerate(replicas[1:], start=1)
    ]
    assert sum(await asyncio.gather(*(s.run_due() for s in survivors))) == 0  # lease holds
    clock.now += LEASE + timedelta(seconds=1)
    ran = await asyncio.gather(*(s.run_due() for s in survivors * 3))
    assert sum(ran) == 1 and len(runs) == 1
    done = await replicas[0].get_job(job.id)
    assert done is not None and done.state is JobState.DONE
    assert done.payload == {"by": f"replica-{runs[0]}"}
    # The killed replica's late finish changes nothing.
    assert await replicas[0].finish_job(dead, JobState.PENDING, due_at=clock.now) is None
