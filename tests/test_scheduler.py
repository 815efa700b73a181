"""The job scheduler on each store (SQLite, PostgreSQL), with a clock the tests move by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.jobs import Job, JobKind, JobState, job_id
from bot.models import Rollback, State
from bot.scheduler import LEASE, Again, Done, JobHandler, Scheduler
from bot.store import Store, open_store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Runs:
    """A job handler that keeps what it ran and answers as told."""

    def __init__(
        self, answer: Again | Done | None = None, *, fail: bool = False, delay: float = 0
    ) -> None:
        self.seen: list[tuple[str, datetime, dict[str, object]]] = []
        self.answer: Again | Done | None = answer
        self.fail = fail
        self.delay = delay

    async def __call__(self, job: Job, now: datetime) -> Again | Done | None:
        self.seen.append((job.id, now, dict(job.payload)))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("the thread is gone")
        return self.answer

    @property
    def ids(self) -> list[str]:
        return [seen[0] for seen in self.seen]


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    await opened.open()
    try:
        for name in ("rb-1", "rb-2"):
            await opened.create(
                Rollback(
                    id=name,
                    service="backend",
                    environment="production",
                    requested_by="U1",
                    current_version="v1.2.4",
                    target_version="v1.2.3",
                    state=State.SUCCEEDED,  # done: monitoring follows a success
                )
            )
        yield opened
    finally:
        await opened.close()


async def schedule(
    store: Store, rollback_id: str, due_at: datetime, kind: JobKind = JobKind.MONITOR
) -> Job:
    job = Job(id=job_id(kind, rollback_id), rollback_id=rollback_id, kind=kind, due_at=due_at)
    assert await store.schedule_job(job)
    return job


async def test_a_due_job_runs_once_when_two_processes_race_for_it(
    store: Store, other: Store
) -> None:
    await schedule(store, "rb-1", T0)
    clock = FakeClock()
    first, second = Runs(), Runs()
    ran = await asyncio.gather(
        Scheduler(store, {JobKind.MONITOR: first}, clock=clock).run_due(),
        Scheduler(other, {JobKind.MONITOR: second}, clock=clock).run_due(),
        Scheduler(other, {JobKind.MONITOR: second}, clock=clock).run_job("monitor:rb-1"),
    )
    assert sum(int(r) for r in ran) == 1
    assert len(first.seen) + len(second.seen) == 1
    job = await store.get_job("monitor:rb-1")
    assert job is not None and job.state is JobState.DONE


async def test_scheduling_twice_keeps_the_first_job(store: Store) -> None:
    job = await schedule(store, "rb-1", T0)
    again = job.model_copy(update={"due_at": T0 + timedelta(hours=1), "payload": {"x": 1}})
    assert not await store.schedule_job(again)
    kept = await store.get_job(job.id)
    assert kept is not None and (kept.due_at, kept.payload) == (T0, {})
    with pytest.raises(KeyError):
        await store.schedule_job(job.model_copy(update={"id": "x", "rollback_id": "rb-nope"}))


async def test_overdue_jobs_run_at_start_and_later_ones_wait_for_their_time(
    store: Store,
) -> None:
    await schedule(store, "rb-1", T0 - timedelta(hours=1))  # fell due while stopped
    await schedule(store, "rb-2", T0 + timedelta(minutes=5))
    clock = FakeClock()
    runs = Runs()
    scheduler = Scheduler(store, {JobKind.MONITOR: runs}, clock=clock)

    assert await scheduler.run_due() == 1
    assert runs.seen == [("monitor:rb-1", T0, {})]
    clock.advance(minutes=4, seconds=59)
    assert await scheduler.run_due() == 0
    clock.advance(seconds=1)
    assert await scheduler.run_due() == 1
    assert runs.ids == ["monitor:rb-1", "monitor:rb-2"]
    assert await store.pending_jobs() == []


async def test_again_reschedules_with_the_new_payload_and_done_keeps_the_last(
    store: Store,
) -> None:
    await schedule(store, "rb-1", T0)
    clock = FakeClock()
    runs = Runs(Again(T0 + timedelta(minutes=5), {"rounds": 1}))
    scheduler = Scheduler(store, {JobKind.MONITOR: runs}, clock=clock)

    assert await scheduler.run_due() == 1
    (job,) = await store.pending_jobs([JobKind.MONITOR])
    assert (job.state, job.due_at, job.payload, job.attempts) == (
        JobState.PENDING,
        T0 + timedelta(minutes=5),
        {"rounds": 1},
        0,
    )
    assert await store.pending_jobs([JobKind.ESCALATE]) == []
    clock.advance(minutes=5)
    runs.answer = Done({"rounds": 2})
    assert await scheduler.run_due() == 1
    assert runs.seen[-1] == ("monitor:rb-1", T0 + timedelta(minutes=5), {"rounds": 1})
    done = await store.get_job("monitor:rb-1")
    assert done is not None and (done.state, done.payload) == (JobState.DONE, {"rounds": 2})


async def test_cancelled_jobs_do_not_run_and_a_cancel_during_a_run_sticks(
    store: Store,
) -> None:
    await schedule(store, "rb-1", T0)
    await schedule(store, "rb-1", T0, JobKind.ESCALATE)
    await schedule(store, "rb-2", T0)
    cancelled = await store.cancel_jobs("rb-1", [JobKind.ESCALATE])
    assert [(j.id, j.state) for j in cancelled] == [("escalate:rb-1", JobState.CANCELLED)]

    async def monitor(job: Job, now: datetime) -> Again:
        if job.rollback_id == "rb-1":
            await store.cancel_jobs("rb-1")  # e.g. a newer rollback closed the window meanwhile
        return Again(now + timedelta(minutes=5), {"rounds": 1})

    runs = Runs()
    handlers: dict[JobKind, JobHandler] = {JobKind.MONITOR: monitor, JobKind.ESCALATE: runs}
    assert await Scheduler(store, handlers, clock=FakeClock()).run_due() == 2
    assert runs.seen == []
    states = {}
    for name in ("monitor:rb-1", "escalate:rb-1", "monitor:rb-2"):
        job = await store.get_job(name)
        assert job is not None
        states[name] = job.state
    assert states == {
        "monitor:rb-1": JobState.CANCELLED,
        "escalate:rb-1": JobState.CANCELLED,
        "monitor:rb-2": JobState.PENDING,
    }
    assert await store.cancel_jobs("rb-1") == []


async def test_a_failing_job_is_retried_later_then_marked_failed(store: Store) -> None:
    await schedule(store, "rb-1", T0)
    clock = FakeClock()
    runs = Runs(fail=True)
    scheduler = Scheduler(
        store, {JobKind.MONITOR: runs}, clock=clock, retry_seconds=10, max_attempts=3
    )

    for attempt in (1, 2):
        assert await scheduler.run_due() == 1
        job = await store.get_job("monitor:rb-1")
        assert job is not None
        assert (job.state, job.attempts) == (JobState.PENDING, attempt)
        assert job.due_at == clock.now + timedelta(seconds=10 * attempt)
        clock.advance(seconds=10 * attempt)
    assert await scheduler.run_due() == 1
    job = await store.get_job("monitor:rb-1")
    assert job is not None and (job.state, job.attempts) == (JobState.FAILED, 3)
    clock.advance(hours=1)
    assert await scheduler.run_due() == 0
    assert len(runs.seen) == 3


async def test_a_run_orphaned_by_a_crash_is_taken_over_once_its_lease_passes(
    store: Store,
) -> None:
    await schedule(store, "rb-1", T0)
    crashed = await store.claim_job("monitor:rb-1", T0, LEASE)  # then the process died
    assert crashed is not None and crashed.state is JobState.RUNNING
    clock = FakeClock()
    runs = Runs()
    scheduler = Scheduler(store, {JobKind.MONITOR: runs}, clock=clock)

    assert await scheduler.run_due() == 0  # its lease still holds
    assert [j.id for j in await store.pending_jobs()] == ["monitor:rb-1"]
    clock.advance(seconds=LEASE.total_seconds() + 1)
    assert await scheduler.run_due() == 1
    assert runs.ids == ["monitor:rb-1"]
    # The crashed run's late finish changes nothing: the claim is no longer its own.
    assert await store.finish_job(crashed, JobState.PENDING, due_at=T0) is None
    done = await store.get_job("monitor:rb-1")
    assert done is not None and done.state is JobState.DONE


async def test_a_stop_hands_back_a_run_it_cuts_short(store: Store) -> None:
    await schedule(store, "rb-1", T0)
    slow = Runs(delay=30)
    stop = asyncio.Event()
    scheduler = Scheduler(store, {JobKind.MONITOR: slow}, clock=FakeClock())

    running = asyncio.ensure_future(scheduler.run_every(0.05, stop, grace_seconds=0.1))
    while not slow.seen:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(running, 5)

    job = await store.get_job("monitor:rb-1")
    assert job is not None and (job.state, job.due_at, job.claim) == (JobState.PENDING, T0, None)
    quick = Runs()
    assert await Scheduler(store, {JobKind.MONITOR: quick}, clock=FakeClock()).run_due() == 1
    assert quick.ids == ["monitor:rb-1"]


async def test_a_job_of_an_unknown_kind_fails_instead_of_looping(store: Store) -> None:
    await schedule(store, "rb-1", T0, JobKind.ESCALATE)
    assert await Scheduler(store, {}, clock=FakeClock()).run_due() == 1
    job = await store.get_job("escalate:rb-1")
    assert job is not None and job.state is JobState.FAILED
