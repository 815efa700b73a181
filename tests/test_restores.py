"""Restores without Slack: which target a command means, who may ask and who may confirm."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import parse_config
from bot.engine import Engine
from bot.errors import Conflict, InvalidRequest, NotAllowed, ReasonRequired
from bot.pool import ProviderPool
from bot.restores import RestoreFailed, RestorePlan, RestoreRequest, Restores
from bot.store.base import LeaseGrant
from bot.store.sqlite import SQLiteStore
from providers.postgres_migrations import PostgresMigrationsProvider
from tests.e2e_helpers import APPROVER, OUTSIDER, REQUESTER
from tests.support.migrations import ADD_POSTS, INIT, PrismaProject
from tests.support.progress import Recorder


def database(backup_dir: Path | str = "/var/backups/db") -> dict[str, Any]:
    return {"provider": "postgres_migrations", "backup_dir": str(backup_dir)}


def containers(name: str) -> dict[str, Any]:
    return {"provider": "docker_compose", "project": name, "service": name}


REDIS_STEP = {"provider": {"provider": "redis_state", "pattern": "s:*", "backup_dir": "/b"}}

# shop: a database in production (its default) and staging, and Redis in production;
# analytics: two databases in one environment; api: no default environment;
# billing: no database at all.
MANY: dict[str, Any] = {
    "approval": {"approvers": {"users": ["U_APPROVER"]}},
    "services": {
        "shop": {
            "environments": {
                "production": {"provider": database(), "steps": [REDIS_STEP]},
                "staging": {"provider": database()},
            }
        },
        "analytics": {
            "environments": {
                "production": {
                    "provider": containers("analytics"),
                    "steps": [
                        {"name": "events-db", "provider": database()},
                        {"name": "users-db", "provider": database()},
                    ],
                }
            }
        },
        "api": {
            "environments": {
                "blue": {"provider": database()},
                "green": {"provider": database()},
            }
        },
        "billing": {"environments": {"production": {"provider": containers("billing")}}},
    },
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(str(tmp_path / "rollbot.db")) as opened:
        yield opened


@pytest.fixture
async def many(store: SQLiteStore) -> AsyncIterator[Restores]:
    config = parse_config(MANY)
    pool = ProviderPool(config)
    yield Restores(Engine(config, store, pool))
    await pool.aclose()


def found(restores: Restores, kind: Any, name: str | None, env: str | None = None) -> tuple:
    target = restores.find(kind, name, env)
    return target.service, target.environment, target.index, target.step


def refusal(restores: Restores, kind: Any, name: str | None, env: str | None = None) -> str:
    with pytest.raises(InvalidRequest) as caught:
        restores.find(kind, name, env)
    return caught.value.message


def test_a_service_means_its_default_environment(many: Restores) -> None:
    assert found(many, "database", "shop") == ("shop", "production", 0, "postgres_migrations")
    assert found(many, "database", "shop", "staging")[:2] == ("shop", "staging")
    assert found(many, "redis", "shop") == ("shop", "production", 1, "redis_state")


def test_the_only_one_needs_no_service(many: Restores) -> None:
    assert found(many, "redis", None) == ("shop", "production", 1, "redis_state")
    assert found(many, "database", None, "staging")[:2] == ("shop", "staging")
    assert found(many, "database", None, "green")[:2] == ("api", "green")


def test_a_step_name_picks_one_of_several_databases(many: Restores) -> None:
    assert found(many, "database", "users-db") == ("analytics", "production", 2, "users-db")


def test_several_candidates_are_listed_as_commands(many: Restores) -> None:
    said = refusal(many, "database", None)
    assert said.startswith("More than one database matches; say which:")
    assert "`/rollback restore database shop env=production`" in said
    assert "`/rollback restore database events-db env=production`" in said
    assert "`/rollback restore database users-db env=production`" in said
    # api has no default environment, so both of its are candidates, each with env=.
    assert "`/rollback restore database api env=blue`" in said
    assert "`/rollback restore database api env=green`" in said
    assert "staging" not in said  # shop means production unless env= says otherwise

    with pytest.raises(InvalidRequest) as caught:
        many.find("database", "api", None, verb="backups")
    assert "`/rollback backups database api env=blue`" in caught.value.message

    said = refusal(many, "database", "analytics")
    assert said.startswith("More than one database of analytics matches")
    assert "events-db env=production" in said and "users-db env=production" in said


def test_nothing_matches(many: Restores) -> None:
    assert refusal(many, "database", "nope") == (
        "Unknown service 'nope'. Known services: analytics, api, billing, shop."
    )
    assert refusal(many, "database", "billing") == (
        "Service 'billing' has no database that rollbot can restore."
    )
    said = refusal(many, "redis", None, "staging")
    assert said == (
        "No redis in staging; there is:\n• `/rollback restore redis shop env=production`"
    )
    said = refusal(many, "database", "shop", "qa")
    assert said.startswith("No database of shop in qa; there is:")
    assert "shop env=staging" in said


# -- policy and running, on a real PostgreSQL ----------------------------------------------


def shop_config(
    project: PrismaProject, backup_dir: Path, protected: bool | None = None, **approval: Any
) -> dict[str, Any]:
    provider = {**database(backup_dir), "migrations_dir": str(project.migrations_dir)}
    production: dict[str, Any] = {"provider": provider, "protected": protected}
    return {
        "approval": {
            "requesters": {"users": [REQUESTER, APPROVER]},
            "approvers": {"users": [APPROVER]},
            **approval,
        },
        "services": {"shop": {"environments": {"production": production}}},
    }


@pytest.fixture
async def make_shop(
    store: SQLiteStore, prisma_db: PrismaProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    """Build Restores for a `shop` whose database is `prisma_db`."""
    monkeypatch.setenv("DATABASE_URL", prisma_db.dsn)
    pools: list[ProviderPool] = []

    def make(**approval: Any) -> Restores:
        config = parse_config(shop_config(prisma_db, tmp_path / "backups", **approval))
        pools.append(ProviderPool(config))
        return Restores(Engine(config, store, pools[-1]))

    yield make
    for pool in pools:
        await pool.aclose()


async def rolled_back(restores: Restores) -> str:
    """Roll the database back to INIT (taking the pre-rollback backup); return the backup."""
    provider = restores.engine.providers.get("shop", "production")
    assert isinstance(provider, PostgresMigrationsProvider)
    await provider.rollback(INIT, Recorder())
    (backup,) = await provider.backups()
    return backup.name


async def actions(restores: Restores, plan: RestorePlan) -> list[tuple[str, str]]:
    entries = await restores.engine.store.audit_log(plan.request.id)
    return [(e.action, e.actor) for e in entries]


async def test_only_requesters_may_ask(make_shop: Any, prisma_db: PrismaProject) -> None:
    restores = make_shop()
    await rolled_back(restores)
    with pytest.raises(NotAllowed, match="not allowed to request restores of shop/production"):
        await restores.prepare("database", None, None, None, OUTSIDER)
    # Nothing was offered; the refusal itself is on record.
    assert [(e.action, e.actor) for e in await restores.engine.store.audit_log()] == [
        ("refused", OUTSIDER)
    ]


async def test_the_plan_names_the_backup_and_the_safety_backup(
    make_shop: Any, prisma_db: PrismaProject
) -> None:
    restores = make_shop()
    backup = await rolled_back(restores)
    plan = await restores.prepare("database", "shop", None, None, REQUESTER)
    assert plan.request.backup == backup and plan.backup.pre_rollback
    assert plan.summary.startswith(f"Restore shop/production database from backup `{backup}` (")
    assert f"is at migration {INIT}" in plan.text
    assert "backed up first" in plan.text and "one transaction" in plan.text
    assert f"Needs confirmation by an approver (<@{APPROVER}>)" in plan.text
    assert await actions(restores, plan) == [("restore_requested", REQUESTER)]


async def test_a_requester_who_is_no_approver_cannot_confirm(
    make_shop: Any, prisma_db: PrismaProject
) -> None:
    restores = make_shop()
    await rolled_back(restores)
    before = await prisma_db.snapshot()
    plan = await restores.prepare("database", None, None, None, REQUESTER)
    with pytest.raises(NotAllowed, match="Only an approver of shop/production"):
        await restores.run(plan, REQUESTER, Recorder())
    assert await prisma_db.snapshot() == before
    assert await restores.engine.store.locks() == []
    assert await actions(restores, plan) == [
        ("restore_requested", REQUESTER),
        ("refused", REQUESTER),
    ]


async def test_an_approver_restores_once(make_shop: Any, prisma_db: PrismaProject) -> None:
    restores = make_shop()
    original = await prisma_db.snapshot()
    backup = await rolled_back(restores)
    assert await prisma_db.tables() == {"users", "_prisma_migrations"}
    plan = await restores.prepare("database", None, None, None, REQUESTER)
    progress, began = Recorder(), []

    async def started() -> None:
        began.append(await restores.engine.store.locks())

    outcome = await restores.run(plan, APPROVER, progress, started=started)

    assert await prisma_db.snapshot() == original
    assert outcome.summary == f"Restored {backup}: database {prisma_db.dsn.rsplit('/', 1)[1]} " + (
        f"is at migration {ADD_POSTS}."
    )
    assert "first backing up the database as it is" in progress.text
    ((lock,),) = began  # the service was locked while it ran, by the confirming approver
    assert (lock.key, lock.holder) == ("shop/production", APPROVER)
    assert lock.rollback_id.startswith("restore-")
    assert await restores.engine.store.locks() == []
    assert await actions(restores, plan) == [
        ("restore_requested", REQUESTER),
        ("restore_confirmed", APPROVER),
        ("restore_finished", "rollbot"),
    ]
    with pytest.raises(Conflict, match=f"already confirmed by <@{APPROVER}>"):
        await restores.run(plan, APPROVER, Recorder())


async def test_empty_approvers_let_the_requester_confirm_outside_protection(
    make_shop: Any, prisma_db: PrismaProject
) -> None:
    restores = make_shop(approvers={}, protected=False)
    await rolled_back(restores)
    plan = await restores.prepare("database", None, None, None, REQUESTER)
    assert "Needs confirmation by anyone (the requester too)" in plan.text
    await restores.run(plan, REQUESTER, Recorder())
    assert "posts" in await prisma_db.tables()


async def test_a_protected_restore_needs_a_second_person_or_break_glass(
    make_shop: Any, prisma_db: PrismaProject
) -> None:
    # APPROVER asks and is an approver: in production, someone else must confirm.
    restores = make_shop(approvers={"users": [APPROVER, "U_APPROVER2"]})
    await rolled_back(restores)
    before = await prisma_db.snapshot()
    plan = await restores.prepare("database", None, None, None, APPROVER)
    assert "(a second person: the environment is protected)" in plan.text
    with pytest.raises(ReasonRequired, match="a second approver must confirm"):
        await restores.run(plan, APPROVER, Recorder())
    assert await prisma_db.snapshot() == before
    await restores.run(plan, APPROVER, Recorder(), break_glass_reason="db is down, all alone")
    assert "posts" in await prisma_db.tables()
    confirmed = [
        e
        for e in await restores.engine.store.audit_log(plan.request.id)
        if e.action == "restore_confirmed"
    ]
    assert [(e.actor, e.details["break_glass"]) for e in confirmed] == [
        (APPROVER, "db is down, all alone")
    ]


async def test_a_protected_restore_without_break_glass_needs_a_second_person(
    make_shop: Any, prisma_db: PrismaProject
) -> None:
    restores = make_shop(
        approvers={"users": [APPROVER, "U_APPROVER2"]}, break_glass={"enabled": False}
    )
    await rolled_back(restores)
    plan = await restores.prepare("database", None, None, None, APPROVER)
    with pytest.raises(NotAllowed, match="break-glass is off here"):
        await restores.run(plan, APPROVER, Recorder(), break_glass_reason="please, please")
    await restores.run(plan, "U_APPROVER2", Recorder())
    assert "posts" in await prisma_db.tables()


async def test_a_busy_service_is_refused(make_shop: Any, prisma_db: PrismaProject) -> None:
    restores = make_shop()
    await rolled_back(restores)
    plan = await restores.prepare("database", None, None, None, REQUESTER)
    before = await prisma_db.snapshot()
    store = restores.engine.store
    lease = await store.take_lease(
        "shop/production", "rb-0a1b2c3d", LeaseGrant("U_OTHER", "elsewhere", timedelta(minutes=5))
    )
    with pytest.raises(Conflict, match="shop/production is locked by rollback rb-0a1b2c3d"):
        await restores.run(plan, APPROVER, Recorder())
    with pytest.raises(Conflict, match="locked by rollback rb-0a1b2c3d"):
        await restores.prepare("database", None, None, None, REQUESTER)
    assert await prisma_db.snapshot() == before
    await store.release_lease("shop/production", "rb-0a1b2c3d", lease.token)
    await restores.run(plan, APPROVER, Recorder())  # the offer still stands
    assert "posts" in await prisma_db.tables()


async def test_cancel(make_shop: Any, prisma_db: PrismaProject) -> None:
    restores = make_shop()
    await rolled_back(restores)
    plan = await restores.prepare("database", None, None, None, REQUESTER)
    with pytest.raises(NotAllowed, match="Only the requester or an approver"):
        await restores.cancel(plan.request, OUTSIDER)
    await restores.cancel(plan.request, REQUESTER)
    with pytest.raises(Conflict, match=f"already cancelled by <@{REQUESTER}>"):
        await restores.run(plan, APPROVER, Recorder())
    assert await prisma_db.tables() == {"users", "_prisma_migrations"}


async def test_a_named_backup_must_exist(make_shop: Any, prisma_db: PrismaProject) -> None:
    restores = make_shop()
    with pytest.raises(InvalidRequest, match="No backups of shop/production database yet"):
        await restores.prepare("database", None, None, None, REQUESTER)
    await rolled_back(restores)
    missing = "20990101T000000.000Z_db_pre-rollback.dump"
    with pytest.raises(InvalidRequest, match=f"No backup `{missing}` of shop/production"):
        await restores.prepare("database", None, missing, None, REQUESTER)


async def test_a_failed_restore_says_what_state_the_database_is_in(
    make_shop: Any, prisma_db: PrismaProject, tmp_path: Path
) -> None:
    restores = make_shop()
    real = await rolled_back(restores)
    stamp = "29990101T000000.000Z"  # same database, a later stamp
    broken = stamp + real[len(stamp) :]
    (tmp_path / "backups" / broken).write_bytes(b"PGDMP not really a dump")
    before = await prisma_db.snapshot()
    plan = await restores.prepare("database", None, broken, None, REQUESTER)

    with pytest.raises(RestoreFailed) as caught:
        await restores.run(plan, APPROVER, Recorder())

    failed = caught.value
    assert failed.message.startswith(
        f"The restore of shop/production database from `{broken}` failed: pg_restore of "
    )
    assert failed.target_state.startswith("unchanged (pg_restore runs in one transaction)")
    assert f"at migration {INIT}" in failed.target_state
    assert await prisma_db.snapshot() == before
    assert await restores.engine.store.locks() == []
    assert [a for a, _ in await actions(restores, plan)][-1] == "restore_failed"


async def test_a_button_must_match_the_recorded_offer(
    make_shop: Any, prisma_db: PrismaProject
) -> None:
    restores = make_shop()
    await rolled_back(restores)
    plan = await restores.prepare("database", None, None, None, REQUESTER)
    assert RestoreRequest.from_json(plan.request.to_json()) == plan.request
    assert (await restores.reload(plan.request)).request == plan.request

    forged = RestoreRequest(**{**plan.request.__dict__, "requested_by": APPROVER})
    with pytest.raises(InvalidRequest, match="There is no restore offer"):
        await restores.reload(forged)
    for damaged in ["", "[]", '{"id": "restore-00000000"}', plan.request.to_json()[:-1]]:
        with pytest.raises(InvalidRequest, match="This restore button is damaged"):
            RestoreRequest.from_json(damaged)
    path = plan.request.to_json().replace(plan.request.backup, "../../etc/passwd")
    with pytest.raises(InvalidRequest, match="damaged"):
        RestoreRequest.from_json(path)
