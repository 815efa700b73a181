"""The store contract: every store rollbot ships (SQLite, PostgreSQL) passes these same tests.

Each test runs once per store (`store_url` in tests/support/stores.py); `other` is a second
store on the same data, as a second replica would have.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.models import (
    AuditEntry,
    Event,
    FreezeEntry,
    FreezeState,
    PlanStep,
    Rollback,
    State,
    StepStatus,
)
from bot.states import LockChange
from bot.store import Store, open_store
from bot.store.base import Change, Fenced, LeaseGrant, OpenSlotTaken, Refusal
from tests.support.stores import execute_raw, make

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def test_use_before_open_is_a_clear_error(store_url: str) -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await open_store(store_url).get("rb-1")


async def test_create_get_round_trips_every_field(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    rollback = make(
        state=State.AWAITING_APPROVAL,
        dry_run=True,
        plan=["stop v1.2.4", "start v1.2.3"],
        warnings=["database migrations ahead"],
        steps=[
            PlanStep(name="compose", kind="docker_compose", current="v1.2.4", target="v1.2.3"),
            PlanStep(
                name="sessions",
                kind="redis_state",
                plan=["clear session:*"],
                danger="FLUSHDB",
                status=StepStatus.NOT_RUN,
                result="not run",
            ),
        ],
        failed_step=1,
        bad_commit="abc1234",
        fix_forward_by="U4",
        drill=True,
        drill_back_seconds=4.25,
        drill_forward_seconds=3.5,
        detected_at=T0 - timedelta(minutes=7),
        released_at=T0 - timedelta(hours=2),
        issue="critical bug affecting all users",
        severity="critical",
        action="immediate rollback",
        override_reason="because",
        break_glass_reason="slack down",
        approved_by=["U2", "U3"],
        error="boom",
        target_state="previous",
        verification="2/2 checks passed",
        verification_table="check  type  result",
        timeline_ts="1.2",
        progress_ts="1.3",
        freeze=FreezeState(
            bad="v1.2.4",
            good="v1.2.3",
            since=T0 + timedelta(minutes=5),
            entries=[FreezeEntry(step=0, action="pinned", saved={"file": "x"}, acted=True)],
        ),
        reported="succeeded@2024-05-01T12:05:00+00:00",
        channel_id="C1",
        message_ts="1.1",
        thread_ts="1.0",
        response_url="https://hooks.example/1",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        created_at=T0,
        updated_at=datetime(2024, 5, 1, 14, 30, 0, 123456, tzinfo=plus_two),
        finished_at=T0 + timedelta(minutes=5),
    )
    left_at_default = {
        name
        for name, info in Rollback.model_fields.items()
        if not info.is_required()
        and getattr(rollback, name) == info.get_default(call_default_factory=True)
    }
    assert not left_at_default, "set new Rollback fields here so they are round-tripped"
    await store.create(rollback)
    got = await store.get("rb-1")
    assert got == rollback
    assert got is not None
    assert got.updated_at.tzinfo is not None
    assert got.updated_at == rollback.updated_at
    assert await store.get("missing") is None


async def test_create_twice_is_refused(store: Store) -> None:
    await store.create(make())
    with pytest.raises(ValueError, match="already exists"):
        await store.create(make())


def change(
    rollback_id: str,
    sources: set[State],
    target: State,
    lock: LockChange = LockChange.NONE,
    *,
    token: int | None = None,
    owner: str = "me",
    **fields: object,
) -> Change:
    """A transition with its audit record; TAKE asks for a five-minute lease."""
    grant = LeaseGrant("U1", owner, timedelta(minutes=5)) if lock is LockChange.TAKE else None
    return Change(
        rollback_id=rollback_id,
        sources=frozenset(sources),
        target=target,
        lock=lock,
        audit=[AuditEntry(actor="U1", action=target.value, rollback_id=rollback_id)],
        events=[Event(rollback_id=rollback_id, actor="U1", kind=target.value, text="moved")],
        fields=dict(fields),
        token=token,
        grant=grant,
    )


async def test_apply_is_a_compare_and_set_with_its_audit(store: Store) -> None:
    await store.create(make(state=State.REQUESTED, created_at=T0, updated_at=T0))

    refused = await store.apply(change("rb-1", {State.AWAITING_APPROVAL}, State.APPROVED))
    assert refused.rollback is None and refused.refusal is Refusal.STATE
    assert refused.current is not None and refused.current.state is State.REQUESTED
    unchanged = await store.get("rb-1")
    assert unchanged is not None and unchanged.updated_at == T0
    assert await store.audit_log("rb-1") == [] and await store.events("rb-1") == []

    moved = (
        await store.apply(
            change(
                "rb-1",
                {State.REQUESTED},
                State.SEVERITY_CONFIRMED,
                severity="high",
                issue="slow",
            )
        )
    ).rollback
    assert moved is not None and moved.state is State.SEVERITY_CONFIRMED
    assert (moved.severity, moved.issue) == ("high", "slow")
    assert moved.updated_at > T0 and moved.finished_at is None
    assert await store.get("rb-1") == moved
    assert [e.action for e in await store.audit_log("rb-1")] == ["severity_confirmed"]
    assert [e.text for e in await store.events("rb-1")] == ["moved"]
    with pytest.raises(KeyError):
        await store.apply(change("missing", {State.REQUESTED}, State.CANCELLED))


async def test_a_final_state_sets_finished_at_and_frees_the_lock(store: Store) -> None:
    await store.create(make("a", state=State.AWAITING_APPROVAL))
    taken = await store.apply(
        change("a", {State.AWAITING_APPROVAL}, State.APPROVED, LockChange.TAKE)
    )
    assert taken.lease is not None and await store.locks() == [taken.lease]
    token = taken.lease.token
    await store.apply(change("a", {State.APPROVED}, State.RUNNING, LockChange.KEEP, token=token))
    done = (
        await store.apply(
            change("a", {State.RUNNING}, State.FAILED, LockChange.RELEASE, token=token, error="x")
        )
    ).rollback
    assert done is not None and done.finished_at is not None and done.error == "x"
    assert done.finished_at.tzinfo is not None
    assert await store.locks() == []


async def test_apply_and_update_refuse_bad_fields(store: Store) -> None:
    await store.create(make())
    with pytest.raises(ValueError):
        await store.apply(change("rb-1", {State.REQUESTED}, State.CANCELLED, state="running"))
    with pytest.raises(ValueError):
        await store.apply(change("rb-1", {State.REQUESTED}, State.CANCELLED, nonsense=1))
    with pytest.raises(ValueError, match="token"):
        await store.apply(change("rb-1", {State.REQUESTED}, State.RUNNING, LockChange.KEEP))
    with pytest.raises(ValueError):
        await store.update("rb-1", state=State.RUNNING)
    with pytest.raises(ValueError):
        await store.update("rb-1", dry_run="not a bool")
    got = await store.get("rb-1")
    assert got is not None and got.state is State.REQUESTED
    assert await store.audit_log() == []


async def test_update_sets_fields(store: Store) -> None:
    await store.create(make(created_at=T0, updated_at=T0))
    updated = await store.update(
        "rb-1", channel_id="C9", message_ts="2.2", thread_ts=None, plan=["scale", "wait"]
    )
    assert (updated.channel_id, updated.message_ts, updated.thread_ts) == ("C9", "2.2", None)
    assert updated.plan == ["scale", "wait"]
    assert updated.updated_at > T0
    assert await store.get("rb-1") == updated
    with pytest.raises(KeyError):
        await store.update("missing", error="x")


async def test_two_stores_racing_one_transition_have_one_winner_and_one_record(
    store: Store, other: Store
) -> None:
    await store.create(make(state=State.AWAITING_APPROVAL))
    results = await asyncio.gather(
        *(
            (store, other)[i % 2].apply(
                change(
                    "rb-1",
                    {State.AWAITING_APPROVAL},
                    State.APPROVED,
                    LockChange.TAKE,
                    owner=f"process-{i % 2}",
                    error=f"winner {i}",
                )
            )
            for i in range(20)
        )
    )
    winners = [r for r in results if r.rollback is not None]
    assert len(winners) == 1
    assert await other.get("rb-1") == winners[0].rollback
    assert [e.action for e in await store.audit_log("rb-1")] == ["approved"]
    assert await store.locks() == [winners[0].lease]


async def test_two_stores_racing_for_a_lease_have_one_holder(store: Store, other: Store) -> None:
    grant = LeaseGrant("h", "me", timedelta(minutes=5))
    results = await asyncio.gather(
        *(
            (store, other)[i % 2].take_lease("backend/production", f"rb-{i}", grant)
            for i in range(20)
        )
    )
    won = [i for i, lock in enumerate(results) if lock.rollback_id == f"rb-{i}"]
    assert len(won) == 1
    assert {lock.rollback_id for lock in results} == {f"rb-{won[0]}"}
    assert [lock.rollback_id for lock in await other.locks()] == [f"rb-{won[0]}"]


async def test_every_grant_has_a_larger_token_and_a_stale_token_is_fenced(
    store: Store, other: Store
) -> None:
    await store.create(make(state=State.AWAITING_APPROVAL))
    first = await store.apply(
        change("rb-1", {State.AWAITING_APPROVAL}, State.APPROVED, LockChange.TAKE, owner="a")
    )
    assert first.lease is not None
    old = first.lease.token
    # Its owner stops renewing: the lease lapses and another process takes it over.
    await store.renew_lease("backend/production", "rb-1", old, timedelta(seconds=-1))
    assert await store.locks() == []
    assert [lock.token for lock in await store.locks(expired=True)] == [old]
    grant = LeaseGrant("rollbot", "b", timedelta(minutes=5))
    new = await other.take_lease("backend/production", "rb-1", grant, takeover_from="a")
    assert (new.owner, new.rollback_id) == ("b", "rb-1") and new.token > old

    # Everything the first owner still tries with its old token changes nothing.
    fenced = await store.apply(
        change("rb-1", {State.APPROVED}, State.RUNNING, LockChange.KEEP, token=old)
    )
    assert fenced.refusal is Refusal.FENCED and fenced.rollback is None
    with pytest.raises(Fenced):
        await store.update("rb-1", fence=("backend/production", old), error="late write")
    assert not await store.renew_lease("backend/production", "rb-1", old, timedelta(minutes=1))
    await store.release_lease("backend/production", "rb-1", old)
    assert await store.locks() == [new]
    got = await store.get("rb-1")
    assert got is not None and got.state is State.APPROVED and got.error is None

    # The new owner's token works.
    moved = await other.apply(
        change("rb-1", {State.APPROVED}, State.INTERRUPTED, LockChange.RELEASE, token=new.token)
    )
    assert moved.rollback is not None and await store.locks() == []


async def test_a_live_lease_is_not_taken_over_unless_its_owner_is_named(
    store: Store,
) -> None:
    grant = LeaseGrant("h1", "a", timedelta(minutes=1))
    first = await store.take_lease("svc/prod", "rb-1", grant)
    other = LeaseGrant("h2", "b", timedelta(minutes=1))
    assert await store.take_lease("svc/prod", "rb-2", other) == first
    assert await store.take_lease("svc/prod", "rb-1", other) == first
    # Naming a dead owner takes over that rollback's own lease, never another's.
    assert await store.take_lease("svc/prod", "rb-2", other, takeover_from="a") == first
    taken = await store.take_lease("svc/prod", "rb-1", other, takeover_from="a")
    assert taken.owner == "b" and taken.token > first.token


async def test_release_by_non_holder_is_a_no_op(store: Store, other: Store) -> None:
    lock = await store.take_lease("svc/prod", "rb-1", LeaseGrant("h1", "a", timedelta(minutes=1)))
    await other.release_lease("svc/prod", "rb-2", lock.token)
    await other.release_lease("svc/prod", "rb-1", lock.token + 1)
    assert await store.locks() == [lock]
    await other.release_lease("svc/prod", "rb-1", lock.token)
    assert await store.locks() == []


async def test_one_open_rollback_per_service_and_environment(store: Store) -> None:
    await store.create(make("rb-1"))
    with pytest.raises(OpenSlotTaken) as taken:
        await store.create(make("rb-2"))
    assert taken.value.other.id == "rb-1"
    await store.create(make("rb-dry", dry_run=True))  # dry runs change nothing
    await store.create(make("rb-staging", environment="staging"))
    await store.apply(change("rb-1", {State.REQUESTED}, State.CANCELLED))
    await store.create(make("rb-3", state=State.FAILED))
    await store.create(make("rb-4"))
    # A retry reopens a failed rollback: not while another one is open.
    refused = await store.apply(change("rb-3", {State.FAILED}, State.APPROVED, LockChange.TAKE))
    assert refused.refusal is Refusal.TAKEN and isinstance(refused.blocker, Rollback)
    assert refused.blocker.id == "rb-4" and await store.locks() == []


async def test_approvals_are_recorded_once_while_awaited(store: Store, other: Store) -> None:
    await store.create(make(state=State.AWAITING_APPROVAL))

    async def approve(on: Store, user: str) -> list[str] | None:
        audit = AuditEntry(actor=user, action="approval", rollback_id="rb-1")
        event = Event(rollback_id="rb-1", actor=user, kind="approval", text=f"by {user}")
        return await on.add_approval("rb-1", user, audit, event)

    assert await approve(store, "U3") == ["U3"]
    assert await approve(other, "U1") == ["U3", "U1"]
    assert await approve(store, "U3") is None
    results = await asyncio.gather(*(approve((store, other)[i % 2], "U2") for i in range(10)))
    assert results.count(["U3", "U1", "U2"]) == 1 and results.count(None) == 9
    got = await store.get("rb-1")
    assert got is not None and got.approved_by == ["U3", "U1", "U2"]
    assert [e.actor for e in await store.audit_log("rb-1")] == ["U3", "U1", "U2"]
    await store.apply(change("rb-1", {State.AWAITING_APPROVAL}, State.CANCELLED))
    assert await approve(store, "U4") is None  # too late: nothing is written
    with pytest.raises(KeyError):
        await store.add_approval("missing", "U1", AuditEntry(actor="U1", action="a"), event=None)  # type: ignore[arg-type]


async def test_events_are_ordered_per_rollback(store: Store) -> None:
    await store.create(make("a"))
    await store.create(make("b", environment="staging"))
    late = Event(rollback_id="a", at=T0 + timedelta(seconds=2), actor="bot", kind="x", text="3")
    await store.add_event(late)
    await store.add_event(Event(rollback_id="a", at=T0, actor="U1", kind="requested", text="1"))
    await store.add_event(Event(rollback_id="b", at=T0, actor="U1", kind="requested", text="b"))
    same = Event(rollback_id="a", at=T0, actor="U1", kind="confirmed", text="2")
    await store.add_event(same)
    events = await store.events("a")
    assert [e.text for e in events] == ["1", "2", "3"]
    assert events[2] == late
    assert await store.events("missing") == []
    with pytest.raises(KeyError):
        await store.add_event(Event(rollback_id="missing", actor="U1", kind="x", text="x"))


async def test_audit_is_append_only(store: Store, store_url: str) -> None:
    await store.audit(AuditEntry(at=T0, actor="U1", action="requested", rollback_id="rb-1"))
    await store.audit(
        AuditEntry(at=T0, actor="U2", action="approved", rollback_id="rb-1", details={"n": "1"})
    )
    await store.audit(AuditEntry(at=T0, actor="U3", action="config_reloaded"))
    everything = await store.audit_log()
    assert [e.actor for e in everything] == ["U1", "U2", "U3"]
    assert everything[1].details == {"n": "1"}
    assert everything[0].at == T0
    assert [e.action for e in await store.audit_log("rb-1")] == ["requested", "approved"]

    for tamper in ("UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"):
            await execute_raw(store_url, tamper)
    assert await store.audit_log() == everything


async def test_find_filters_and_orders_newest_first(store: Store) -> None:
    specs = [
        ("r1", "backend", "production", State.SUCCEEDED),
        ("r2", "backend", "staging", State.RUNNING),
        ("r3", "frontend", "production", State.RUNNING),
        ("r4", "backend", "production", State.AWAITING_APPROVAL),
    ]
    for minutes, (rid, service, env, state) in enumerate(specs):
        created = T0 + timedelta(minutes=minutes)
        await store.create(
            make(rid, service=service, environment=env, state=state, created_at=created)
        )

    def ids(found: list[Rollback]) -> list[str]:
        return [r.id for r in found]

    assert ids(await store.find()) == ["r4", "r3", "r2", "r1"]
    assert ids(await store.find(limit=2)) == ["r4", "r3"]
    assert ids(await store.find(service="backend")) == ["r4", "r2", "r1"]
    assert ids(await store.find(environment="production")) == ["r4", "r3", "r1"]
    assert ids(await store.find(states={State.RUNNING})) == ["r3", "r2"]
    assert ids(
        await store.find(
            states={State.RUNNING, State.AWAITING_APPROVAL},
            service="backend",
            environment="staging",
        )
    ) == ["r2"]
    assert await store.find(states=set()) == []
    assert await store.find(service="nope") == []
