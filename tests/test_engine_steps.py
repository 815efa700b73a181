"""Multi-step plans in the engine: planning, skipped steps, data-loss confirmation, reverts.

The service is deployed by git (revert mode, a local bare remote); its later steps are
Prisma migrations on a real PostgreSQL and a real Redis database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from bot.config import parse_config
from bot.engine import Engine
from bot.errors import InvalidRequest, NotAllowed
from bot.models import State, StepStatus
from bot.pool import ProviderPool
from bot.store.sqlite import SQLiteStore
from tests.e2e_helpers import APPROVER, OUTSIDER, REQUESTER
from tests.support.gitrepos import GitRemote
from tests.support.migrations import ADD_POSTS, ADD_ROLE, INIT, PrismaProject
from tests.test_engine import Transcript

SESSIONS = 10


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(str(tmp_path / "rollbot.db")) as opened:
        yield opened


@pytest.fixture
async def sessions(scratch_db: str) -> AsyncIterator[redis.asyncio.Redis]:
    """The scratch Redis database with session keys in it."""
    client = redis.asyncio.Redis.from_url(scratch_db)
    for i in range(SESSIONS):
        await client.set(f"session:{i}", "x", px=600_000)
    await client.set("feature-flags", "on")
    yield client
    await client.aclose()


def web_config(
    remote: GitRemote,
    tmp_path: Path,
    steps: list[dict[str, Any]],
    required_approvals: int = 1,
) -> dict[str, Any]:
    return {
        "approval": {"approvers": {"users": [APPROVER]}, "required_approvals": required_approvals},
        "services": {
            "web": {
                "environments": {
                    "production": {
                        "provider": {
                            "provider": "git",
                            "repository": str(remote.bare),
                            "branch": "main",
                            "mode": "revert",
                            "cache_dir": str(tmp_path / "cache"),
                        },
                        "steps": steps,
                        # Without approvals, only an unprotected environment is valid.
                        "protected": required_approvals > 0,
                    }
                }
            }
        },
    }


def database_step(project: PrismaProject, tmp_path: Path, **target: Any) -> dict[str, Any]:
    return {
        "name": "database",
        "provider": {
            "provider": "postgres_migrations",
            "migrations_dir": str(project.migrations_dir),
            "backup_dir": str(tmp_path / "pg"),
        },
        **target,
    }


def flush_step(tmp_path: Path) -> dict[str, Any]:
    return {
        "name": "cache",
        "provider": {
            "provider": "redis_state",
            "flush_database": True,
            "backup_dir": str(tmp_path / "redis"),
        },
    }


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, prisma_db: PrismaProject, scratch_db: str) -> None:
    monkeypatch.setenv("DATABASE_URL", prisma_db.dsn)
    monkeypatch.setenv("REDIS_URL", scratch_db)


async def make_engine(store: SQLiteStore, config: dict[str, Any]) -> Engine:
    parsed = parse_config(config)
    return Engine(parsed, store, ProviderPool(parsed))


@pytest.mark.usefixtures("environment")
async def test_flush_needs_an_explicit_confirmation_even_without_approvals(
    store: SQLiteStore,
    git_remote: GitRemote,
    prisma_db: PrismaProject,
    sessions: redis.asyncio.Redis,
    tmp_path: Path,
) -> None:
    steps = [database_step(prisma_db, tmp_path), flush_step(tmp_path)]
    engine = await make_engine(store, web_config(git_remote, tmp_path, steps, 0))
    try:
        rb = await engine.request(service="web", version="v1.2.3", environment=None, user=REQUESTER)
        assert [(s.name, s.current, s.target) for s in rb.steps] == [
            ("git", "v1.2.4", "v1.2.3"),
            ("database", ADD_POSTS, ADD_ROLE),
            ("cache", None, None),
        ]
        assert rb.danger == ["cache: FLUSHDB empties the whole Redis database"]
        rb = await engine.confirm_severity(rb.id, "critical_bug", REQUESTER)
        assert rb.state is State.AWAITING_APPROVAL  # no approvals needed, but a confirmation is
        with pytest.raises(InvalidRequest, match="cannot be fully undone"):
            await engine.approve(rb.id, REQUESTER)
        with pytest.raises(NotAllowed):
            await engine.approve(rb.id, OUTSIDER, danger_confirmed=True)
        assert await sessions.dbsize() == SESSIONS + 1
        rb = await engine.approve(rb.id, REQUESTER, danger_confirmed=True)
        assert rb.state is State.APPROVED
        transcript = Transcript()
        done = await engine.execute(rb.id, transcript)
        assert done is not None and done.state is State.SUCCEEDED, transcript.lines
        assert [s.status for s in done.steps] == [StepStatus.DONE] * 3
        assert git_remote.file("app.txt") == "1.2.3\n"
        assert await prisma_db.migration_rows() == {
            INIT: (True, False),
            ADD_ROLE: (True, False),
            ADD_POSTS: (True, True),
        }
        assert await sessions.dbsize() == 0
        (backup,) = (tmp_path / "redis").iterdir()
        assert backup.stat().st_size > 0
        kinds = [e.kind for e in await store.events(rb.id)]
        assert kinds.count("danger_confirmed") == 1
    finally:
        await engine.providers.aclose()


@pytest.mark.usefixtures("environment")
async def test_a_step_already_at_its_version_is_skipped(
    store: SQLiteStore, git_remote: GitRemote, prisma_db: PrismaProject, tmp_path: Path
) -> None:
    steps = [database_step(prisma_db, tmp_path, targets={"v1.2.3": ADD_POSTS})]
    engine = await make_engine(store, web_config(git_remote, tmp_path, steps))
    try:
        rb = await engine.request(service="web", version="v1.2.3", environment=None, user=REQUESTER)
        assert rb.steps[1].status is StepStatus.SKIPPED
        assert rb.steps[1].plan == [f"Already at {ADD_POSTS}: nothing to do."]
        await engine.confirm_severity(rb.id, "critical_bug", REQUESTER)
        rb = await engine.approve(rb.id, APPROVER)
        done = await engine.execute(rb.id, Transcript())
        assert done is not None and done.state is State.SUCCEEDED
        assert [s.status for s in done.steps] == [StepStatus.DONE, StepStatus.SKIPPED]
        assert not (tmp_path / "pg").exists()  # no backup: nothing ran
        assert (await prisma_db.migration_rows())[ADD_POSTS] == (True, False)
    finally:
        await engine.providers.aclose()


@pytest.mark.usefixtures("environment")
async def test_a_step_version_that_does_not_exist_refuses_the_request(
    store: SQLiteStore, git_remote: GitRemote, prisma_db: PrismaProject, tmp_path: Path
) -> None:
    steps = [database_step(prisma_db, tmp_path, target="20990101000000_nope")]
    engine = await make_engine(store, web_config(git_remote, tmp_path, steps))
    try:
        with pytest.raises(InvalidRequest) as refused:
            await engine.request(service="web", version="v1.2.3", environment=None, user=REQUESTER)
        assert "step 2 (database) of web/production" in refused.value.message
        assert "20990101000000_nope is not available" in refused.value.message
        assert await store.find() == []
    finally:
        await engine.providers.aclose()


async def test_revert_a_named_bad_commit(
    store: SQLiteStore, git_remote: GitRemote, tmp_path: Path
) -> None:
    engine = await make_engine(store, web_config(git_remote, tmp_path, []))
    bad = git_remote.commit_of("main~1")  # "Rework search"
    try:
        with pytest.raises(InvalidRequest, match="either a version or a commit"):
            await engine.request(
                service="web", version="v1.2.3", environment=None, user=REQUESTER, bad_commit=bad
            )
        with pytest.raises(InvalidRequest, match="not a valid commit"):
            await engine.request(
                service="web", version=None, environment=None, user=REQUESTER, bad_commit="HEAD~1"
            )
        rb = await engine.request(
            service="web", version=None, environment=None, user=REQUESTER, bad_commit=bad[:10]
        )
        assert rb.target_version == f"revert {bad[:10]}"
        assert "Rework search" in " ".join(rb.plan)
        await engine.confirm_severity(rb.id, "critical_bug", REQUESTER)
        rb = await engine.approve(rb.id, APPROVER)
        done = await engine.execute(rb.id, Transcript())
        assert done is not None and done.state is State.SUCCEEDED
        assert git_remote.file("search.txt") == "fast search\n"
        assert git_remote.file("app.txt") == "1.2.4\n"
        assert git_remote.subjects()[0] == 'Revert "Rework search"'
    finally:
        await engine.providers.aclose()


@pytest.mark.usefixtures("environment")
async def test_a_named_commit_needs_a_provider_that_reverts_commits(
    store: SQLiteStore, prisma_db: PrismaProject, tmp_path: Path
) -> None:
    config = {
        "approval": {"approvers": {"users": [APPROVER]}},
        "services": {
            "db": {
                "environments": {
                    "production": {"provider": database_step(prisma_db, tmp_path)["provider"]}
                }
            }
        },
    }
    engine = await make_engine(store, config)
    try:
        with pytest.raises(InvalidRequest, match="cannot revert a named commit"):
            await engine.request(
                service="db", version=None, environment=None, user=REQUESTER, bad_commit="abcdef1"
            )
    finally:
        await engine.providers.aclose()
