"""The SQLite store against real database files, including two stores racing on one file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.models import AuditEntry, Event, PlanStep, Rollback, State, StepStatus
from bot.store import open_store
from bot.store.sqlite import SQLiteStore

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make(rollback_id: str = "rb-1", **fields: object) -> Rollback:
    """Build a rollback with sensible defaults."""
    values: dict[str, object] = {
        "id": rollback_id,
        "service": "backend",
        "environment": "production",
        "requested_by": "U1",
        "current_version": "v1.2.4",
        "target_version": "v1.2.3",
    }
    values.update(fields)
    return Rollback.model_validate(values)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "rollbot.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(str(db_path))
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def other(db_path: Path, store: SQLiteStore) -> AsyncIterator[SQLiteStore]:
    """A second store on the same file, as a second process would have."""
    other = SQLiteStore(str(db_path))
    await other.open()
    yield other
    await other.close()


async def test_open_creates_folder_is_idempotent_and_uses_wal(db_path: Path) -> None:
    async with SQLiteStore(str(db_path)) as store:
        await store.open()
    await store.close()
    async with SQLiteStore(str(db_path)) as again:
        await again.create(make())
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_connection_pragmas(store: SQLiteStore) -> None:
    assert store._conn is not None
    pragmas = {}
    for name in ("journal_mode", "busy_timeout", "foreign_keys"):
        async with store._conn.execute(f"PRAGMA {name}") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        pragmas[name] = row[0]
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 5000, "foreign_keys": 1}


async def test_open_store_url(tmp_path: Path) -> None:
    path = tmp_path / "abs" / "r.db"
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStore)
    assert store.path == str(path)
    async with store:
        await store.create(make())
    assert path.exists()


async def test_memory_store() -> None:
    async with SQLiteStore(":memory:") as store:
        rollback = make()
        await store.create(rollback)
        assert await store.get("rb-1") == rollback


async def test_use_before_open_is_a_clear_error(db_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await SQLiteStore(str(db_path)).get("rb-1")


async def test_create_get_round_trips_every_field(store: SQLiteStore) -> None:
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
        reported="succeeded@2024-05-01T12:05:00+00:00",
        channel_id="C1",
        message_ts="1.1",
        thread_ts="1.0",
        response_url="https://hooks.example/1",
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


async def test_create_twice_is_refused(store: SQLiteStore) -> None:
    await store.create(make())
    with pytest.raises(ValueError, match="already exists"):
        await store.create(make())


async def test_transition_compare_and_set(store: SQLiteStore) -> None:
    await store.create(make(state=State.REQUESTED, created_at=T0, updated_at=T0))

    assert await store.transition("rb-1", {State.AWAITING_APPROVAL}, State.APPROVED) is None
    unchanged = await store.get("rb-1")
    assert unchanged is not None
    assert unchanged.state is State.REQUESTED
    assert unchanged.updated_at == T0

    moved = await store.transition(
        "rb-1", {State.REQUESTED}, State.SEVERITY_CONFIRMED, severity="high", issue="slow"
    )
    assert moved is not None
    assert moved.state is State.SEVERITY_CONFIRMED
    assert (moved.severity, moved.issue) == ("high", "slow")
    assert moved.updated_at > T0
    assert moved.finished_at is None
    assert await store.get("rb-1") == moved

    assert await store.transition("missing", {State.REQUESTED}, State.CANCELLED) is None
    assert await store.transition("rb-1", set(), State.CANCELLED) is None


async def test_transition_to_final_state_sets_finished_at(store: SQLiteStore) -> None:
    await store.create(make("a", state=State.VERIFYING))
    await store.create(make("b", state=State.RUNNING))
    done = await store.transition("a", {State.VERIFYING}, State.SUCCEEDED)
    assert done is not None
    assert done.finished_at is not None
    assert done.finished_at.tzinfo is not None
    given = await store.transition("b", {State.RUNNING}, State.FAILED, finished_at=T0, error="x")
    assert given is not None
    assert (given.finished_at, given.error) == (T0, "x")


async def test_transition_and_update_refuse_bad_fields(store: SQLiteStore) -> None:
    await store.create(make())
    with pytest.raises(ValueError):
        await store.transition("rb-1", {State.REQUESTED}, State.CANCELLED, state="running")
    with pytest.raises(ValueError):
        await store.transition("rb-1", {State.REQUESTED}, State.CANCELLED, nonsense=1)
    with pytest.raises(ValueError):
        await store.update("rb-1", state=State.RUNNING)
    with pytest.raises(ValueError):
        await store.update("rb-1", dry_run="not a bool")
    got = await store.get("rb-1")
    assert got is not None
    assert got.state is State.REQUESTED


async def test_update_sets_fields(store: SQLiteStore) -> None:
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


async def test_two_stores_racing_one_transition_have_one_winner(
    store: SQLiteStore, other: SQLiteStore
) -> None:
    await store.create(make(state=State.AWAITING_APPROVAL))
    results = await asyncio.gather(
        *(
            (store, other)[i % 2].transition(
                "rb-1", {State.AWAITING_APPROVAL}, State.APPROVED, error=f"winner {i}"
            )
            for i in range(20)
        )
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await other.get("rb-1") == winners[0]


async def test_two_stores_racing_for_a_lock_have_one_holder(
    store: SQLiteStore, other: SQLiteStore
) -> None:
    ttl = timedelta(minutes=5)
    results = await asyncio.gather(
        *(
            (store, other)[i % 2].acquire_lock("backend/production", f"h{i % 2}", f"rb-{i}", ttl)
            for i in range(20)
        )
    )
    won = [i for i, lock in enumerate(results) if lock.rollback_id == f"rb-{i}"]
    assert len(won) == 1
    assert {lock.rollback_id for lock in results} == {f"rb-{won[0]}"}
    assert [lock.rollback_id for lock in await other.locks()] == [f"rb-{won[0]}"]


async def test_lock_refresh_expiry_and_takeover(store: SQLiteStore) -> None:
    first = await store.acquire_lock("svc/prod", "h1", "rb-1", timedelta(minutes=1))
    assert first.rollback_id == "rb-1"
    assert await store.acquire_lock("svc/prod", "h2", "rb-2", timedelta(minutes=1)) == first

    extended = await store.acquire_lock("svc/prod", "h1", "rb-1", timedelta(minutes=2))
    assert extended.expires_at > first.expires_at
    # Re-acquiring resets the TTL, so a tiny one makes the lock expire soon.
    short = await store.acquire_lock("svc/prod", "h1", "rb-1", timedelta(milliseconds=50))
    assert short.expires_at < first.expires_at

    await asyncio.sleep(0.15)
    assert await store.locks() == []
    taken = await store.acquire_lock("svc/prod", "h2", "rb-2", timedelta(minutes=1))
    assert (taken.holder, taken.rollback_id) == ("h2", "rb-2")
    assert await store.locks() == [taken]


async def test_release_by_non_holder_is_a_no_op(store: SQLiteStore, other: SQLiteStore) -> None:
    lock = await store.acquire_lock("svc/prod", "h1", "rb-1", timedelta(minutes=1))
    await other.release_lock("svc/prod", "rb-2")
    assert await store.locks() == [lock]
    await other.release_lock("svc/prod", "rb-1")
    assert await store.locks() == []
    again = await store.acquire_lock("svc/prod", "h2", "rb-2", timedelta(minutes=1))
    assert again.rollback_id == "rb-2"


async def test_locks_are_per_key(store: SQLiteStore) -> None:
    a = await store.acquire_lock("svc/prod", "h1", "rb-1", timedelta(minutes=1))
    b = await store.acquire_lock("svc/staging", "h1", "rb-2", timedelta(minutes=1))
    assert await store.locks() == [a, b]


async def test_approvals_are_idempotent_and_ordered(store: SQLiteStore, other: SQLiteStore) -> None:
    await store.create(make())
    assert await store.add_approval("rb-1", "U3") == ["U3"]
    assert await other.add_approval("rb-1", "U1") == ["U3", "U1"]
    assert await store.add_approval("rb-1", "U3") == ["U3", "U1"]
    assert await other.add_approval("rb-1", "U2") == ["U3", "U1", "U2"]
    got = await store.get("rb-1")
    assert got is not None
    assert got.approved_by == ["U3", "U1", "U2"]
    with pytest.raises(KeyError):
        await store.add_approval("missing", "U1")


async def test_approved_by_given_to_transition_joins_the_approvals(store: SQLiteStore) -> None:
    await store.create(make(state=State.AWAITING_APPROVAL))
    await store.add_approval("rb-1", "U2")
    moved = await store.transition(
        "rb-1", {State.AWAITING_APPROVAL}, State.APPROVED, approved_by=["U2", "U9"]
    )
    assert moved is not None
    assert moved.approved_by == ["U2", "U9"]
    assert await store.add_approval("rb-1", "U9") == ["U2", "U9"]


async def test_concurrent_duplicate_approvals_count_once(
    store: SQLiteStore, other: SQLiteStore
) -> None:
    await store.create(make())
    await asyncio.gather(*((store, other)[i % 2].add_approval("rb-1", "U1") for i in range(10)))
    assert await store.add_approval("rb-1", "U2") == ["U1", "U2"]


async def test_events_are_ordered_per_rollback(store: SQLiteStore) -> None:
    await store.create(make("a"))
    await store.create(make("b"))
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


async def test_audit_is_append_only(store: SQLiteStore, db_path: Path) -> None:
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

    conn = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit SET actor = 'mallory'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit")
    finally:
        conn.close()
    assert await store.audit_log() == everything


async def test_find_filters_and_orders_newest_first(store: SQLiteStore) -> None:
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
