"""`/rollback history` from what the store holds: order, outcomes, durations, approvals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import parse_config
from bot.engine import Engine
from bot.errors import InvalidRequest, NotAllowed
from bot.history import SHOWN, history_text
from bot.models import Event, Rollback, State
from bot.pool import ProviderPool
from bot.store.sqlite import SQLiteStore
from tests.e2e_helpers import APPROVER, REQUESTER, backend_config, backend_rollback

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    config = parse_config(backend_config("pmcrm", 8080))
    async with SQLiteStore(str(tmp_path / "rollbot.db")) as store:
        yield Engine(config, store, ProviderPool(config))


async def add(
    engine: Engine,
    minute: int,
    state: State,
    *,
    events: dict[str, int] | None = None,
    **fields: Any,
) -> Rollback:
    """Store a rollback requested at T0 + minute, with timeline events at given seconds."""
    created = T0 + timedelta(minutes=minute)
    rollback = backend_rollback(f"rb-{minute:08x}", state=state, created_at=created, **fields)
    await engine.store.create(rollback)
    for kind, second in (events or {}).items():
        at = created + timedelta(seconds=second)
        await engine.store.add_event(
            Event(rollback_id=rollback.id, actor="rollbot", kind=kind, text=kind, at=at)
        )
    return rollback


async def test_rollbacks_and_drills_apart_newest_first(engine: Engine) -> None:
    succeeded = await add(
        engine,
        1,
        State.SUCCEEDED,
        events={"approved": 100, "started": 151},
        finished_at=T0 + timedelta(minutes=1, seconds=192),
        severity="critical",
        approved_by=[APPROVER, "U_APPROVER2"],
    )
    glass = await add(
        engine,
        2,
        State.FAILED,
        events={"approved": 20, "started": 21},
        finished_at=T0 + timedelta(minutes=2, seconds=80),
        severity="critical",
        approved_by=[REQUESTER],
        break_glass_reason="db down, nobody awake",
        error="Verification failed: backend health.",
    )
    by_policy = await add(
        engine,
        3,
        State.SUCCEEDED,
        events={"approved": 5, "started": 6},
        finished_at=T0 + timedelta(minutes=3, seconds=36),
        severity="high",
    )
    await add(engine, 4, State.CANCELLED, dry_run=True, error="Dry run")
    drill = await add(
        engine,
        5,
        State.FAILED,
        drill=True,
        drill_back_seconds=4.24,
        finished_at=T0 + timedelta(minutes=5, seconds=20),
        error="Verification failed: health.",
    )
    passed = await add(
        engine,
        6,
        State.SUCCEEDED,
        drill=True,
        drill_back_seconds=3.0,
        drill_forward_seconds=2.5,
        finished_at=T0 + timedelta(minutes=6, seconds=7),
    )

    text = await history_text(engine, "backend", None, REQUESTER)

    rollbacks, drills = text.split("*Drills*")
    assert rollbacks.index(by_policy.id) < rollbacks.index(glass.id) < rollbacks.index(succeeded.id)
    assert "rb-00000004" not in text  # dry runs are not rollbacks
    assert (
        f"`{succeeded.id}` *backend/production* `v1.2.4` → `v1.2.3`: *succeeded*, took 3 min 12 s "
        "(ran 41 seconds), 2026-03-02 09:01 UTC\n      critical · requested by <@U_REQ> · "
        "approved by <@U_APPROVER>, <@U_APPROVER2>"
    ) in rollbacks
    assert (
        "*failed*, took 1 min 20 s (ran 59 seconds), 2026-03-02 09:02 UTC\n      critical · "
        "requested by <@U_REQ> · approved by <@U_REQ> (break-glass: db down, nobody awake) · "
        "Verification failed: backend health."
    ) in rollbacks
    assert "high · requested by <@U_REQ> · no approval needed by policy" in rollbacks
    assert drills.index(passed.id) < drills.index(drill.id)
    assert (
        f"`{passed.id}` *backend/production* `v1.2.4` → `v1.2.3` → `v1.2.4`: *passed*, "
        "back 3 seconds, forward 3 seconds, took 7 seconds"
    ) in drills
    assert (
        "*failed going forward (leg 2/2)*, back 4 seconds, took 20 seconds, 2026-03-02 09:05 UTC\n"
        "      by <@U_REQ> · Verification failed: health."
    ) in drills


async def test_at_most_fifteen_of_each_and_clear_answers(engine: Engine) -> None:
    assert await history_text(engine, None, None, REQUESTER) == (
        "No rollbacks or drills recorded for every service yet."
    )
    for minute in range(SHOWN + 2):
        await add(engine, minute, State.REJECTED, error=f"Rejected by <@{APPROVER}>")
    running = await add(engine, 40, State.RUNNING, events={"started": 3})

    text = await history_text(engine, None, "production", REQUESTER)

    assert text.startswith("*Rollback history of every service in production*")
    assert text.count("*rejected*") == SHOWN - 1 and text.count("*running*") == 1
    assert f"`{running.id}`" in text and "open for" in text and "(ran " in text
    assert "rb-00000000" not in text and "rb-00000001" not in text  # the oldest fall off
    assert "None recorded: `/rollback drill SERVICE`" in text
    with pytest.raises(InvalidRequest, match=r"Unknown service 'nope'\. Known services: backend"):
        await history_text(engine, "nope", None, REQUESTER)
    with pytest.raises(InvalidRequest, match="has no environment 'staging'"):
        await history_text(engine, "backend", "staging", REQUESTER)
    with pytest.raises(InvalidRequest, match="No service has an environment 'qa'"):
        await history_text(engine, None, "qa", REQUESTER)


async def test_history_answers_only_those_who_may_read(tmp_path: Path) -> None:
    data = backend_config("pmcrm", 8080, requesters={"users": [REQUESTER]})
    data["approval"]["readers"] = {"users": ["U_AUDITOR"]}
    config = parse_config(data)
    async with SQLiteStore(str(tmp_path / "rollbot.db")) as store:
        engine = Engine(config, store, ProviderPool(config))
        with pytest.raises(NotAllowed, match="may not read the history of backend"):
            await history_text(engine, "backend", None, "U_NOBODY")
        for reader in (REQUESTER, APPROVER, "U_AUDITOR"):
            assert "No rollbacks or drills recorded" in await history_text(
                engine, None, None, reader
            )
        refused = [(e.actor, e.details["what"]) for e in await store.audit_log()]
        assert refused == [("U_NOBODY", "history")]


async def test_a_break_glass_reason_is_shown_inert(engine: Engine) -> None:
    await add(
        engine,
        1,
        State.FAILED,
        severity="critical",
        approved_by=[REQUESTER],
        break_glass_reason="<!here> <@U_OTHER>\n*Status* succeeded",
        error="Rollback failed: redis://:hunter2@cache refused <!channel>",
    )

    text = await history_text(engine, "backend", None, REQUESTER)

    assert "approved by <@U_REQ> (break-glass: &lt;!here&gt; &lt;@U_OTHER&gt; ∗Status∗ " in text
    assert "Rollback failed: redis://[redacted]@cache refused &lt;!channel&gt;" in text
    assert "\n*Status*" not in text and "hunter2" not in text
