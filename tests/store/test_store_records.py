"""The store contract for records, deliveries, Slack requests and jobs, on every store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.jobs import Job, JobKind, JobState
from bot.models import Rollback
from bot.records import ChecklistMark, Delivery
from bot.store import Store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def rollback(rollback_id: str = "rb-1") -> Rollback:
    return Rollback(
        id=rollback_id,
        service="backend",
        environment=f"env-{rollback_id}",
        requested_by="U1",
        current_version="v1.2.4",
        target_version="v1.2.3",
    )


async def test_checklist_marks_are_appended_in_order(store: Store) -> None:
    await store.create(rollback())
    for item, done, actor in (("a", True, "U1"), ("b", True, "U2"), ("a", False, "U1")):
        await store.add_checklist_mark(
            ChecklistMark(rollback_id="rb-1", item=item, done=done, actor=actor, at=T0)
        )
    marks = await store.checklist_marks("rb-1")
    assert [(m.item, m.done, m.actor) for m in marks] == [
        ("a", True, "U1"),
        ("b", True, "U2"),
        ("a", False, "U1"),
    ]
    assert marks[0].at == T0
    assert await store.checklist_marks("missing") == []
    with pytest.raises(KeyError):
        await store.add_checklist_mark(
            ChecklistMark(rollback_id="missing", item="a", done=True, actor="U1")
        )


async def test_a_delivery_is_claimed_once_across_replicas(store: Store, other: Store) -> None:
    await store.create(rollback())
    claims = await asyncio.gather(
        *(
            (store, other)[i % 2].claim_delivery(
                Delivery(rollback_id="rb-1", key="checklist", actor=f"U{i}", at=T0)
            )
            for i in range(10)
        )
    )
    assert claims.count(True) == 1
    await other.update_delivery("rb-1", "checklist", channel="C1", ts="1.5")
    await store.update_delivery("rb-1", "checklist", body="draft")
    got = await store.delivery("rb-1", "checklist")
    assert got is not None
    assert (got.channel, got.ts, got.body, got.at) == ("C1", "1.5", "draft", T0)
    with pytest.raises(KeyError):
        await store.update_delivery("rb-1", "nope", ts="1")
    await store.release_delivery("rb-1", "checklist")
    assert await other.delivery("rb-1", "checklist") is None
    assert await other.claim_delivery(Delivery(rollback_id="rb-1", key="checklist", actor="U9"))
    with pytest.raises(KeyError):
        await store.claim_delivery(Delivery(rollback_id="missing", key="k", actor="U1"))


async def test_a_slack_request_is_claimed_once_and_old_claims_are_pruned(
    store: Store, other: Store
) -> None:
    keep = timedelta(days=1)
    results = await asyncio.gather(
        *((store, other)[i % 2].claim_request("command:T1", T0, keep) for i in range(10))
    )
    assert results.count(True) == 1
    assert not await other.claim_request("command:T1", T0 + timedelta(hours=23), keep)
    # A day later the key is forgotten: Slack retries within minutes, not days.
    assert await store.claim_request("command:T1", T0 + timedelta(days=2), keep)


async def test_due_jobs_are_claimed_by_one_replica_each(store: Store, other: Store) -> None:
    for i in range(6):
        await store.create(rollback(f"rb-{i}"))
        await store.schedule_job(
            Job(id=f"monitor:rb-{i}", rollback_id=f"rb-{i}", kind=JobKind.MONITOR, due_at=T0)
        )
    await store.schedule_job(
        Job(id="later", rollback_id="rb-0", kind=JobKind.ESCALATE, due_at=T0 + timedelta(hours=1))
    )
    lease = timedelta(minutes=4)
    batches = await asyncio.gather(
        *((store, other)[i % 2].claim_due_jobs(T0, lease, limit=2) for i in range(6))
    )
    claimed = [job.id for batch in batches for job in batch]
    assert sorted(claimed) == [f"monitor:rb-{i}" for i in range(6)]
    assert all(job.state is JobState.RUNNING and job.attempts == 1 for b in batches for job in b)
    assert len({job.claim for b in batches for job in b}) == 6
    assert await store.claim_due_jobs(T0, lease) == []
    # A run whose process died is claimed again once its lease has passed.
    again = await other.claim_due_jobs(T0 + lease + timedelta(seconds=1), lease, limit=10)
    assert sorted(job.id for job in again) == sorted(claimed)
    assert {job.attempts for job in again} == {2}
    with pytest.raises(KeyError):
        await store.schedule_job(
            Job(id="x", rollback_id="missing", kind=JobKind.MONITOR, due_at=T0)
        )
