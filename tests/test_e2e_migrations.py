"""End to end: a real `rollbot serve --http` rolling back Prisma migrations on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import APPROVER, ready_to_approve, thread_text
from tests.support.bot import RunningBot, StartBot
from tests.support.migrations import (
    ADD_POSTS,
    ADD_ROLE,
    INIT,
    PrismaProject,
    with_database,
)
from tests.support.slack import text_of

PASSWORD = "e2e-Secret-pw-71"


def migrations_config(project: PrismaProject, backup_dir: Path) -> dict[str, Any]:
    """A config with one postgres_migrations service verified with `SELECT 1`."""
    return {
        "approval": {"approvers": {"users": [APPROVER]}, "required_approvals": 1},
        "runtime": {"verify_deadline_seconds": 20, "verify_interval_seconds": 0.5},
        "services": {
            "db": {
                "environments": {
                    "production": {
                        "provider": {
                            "provider": "postgres_migrations",
                            "dsn_env": "DATABASE_URL",
                            "migrations_dir": str(project.migrations_dir),
                            "backup_dir": str(backup_dir),
                        },
                        "checks": [
                            {"name": "database", "type": "postgres", "dsn_env": "DATABASE_URL"}
                        ],
                    }
                }
            }
        },
    }


async def start(start_rollbot: StartBot, project: PrismaProject, tmp_path: Path) -> RunningBot:
    """Start a bot whose DATABASE_URL (with a password the test server ignores) is the project's."""
    database = project.dsn.rsplit("/", 1)[1]
    dsn = with_database(project.dsn, database, PASSWORD)
    config = migrations_config(project, tmp_path / "backups")
    return await start_rollbot(config, extra_env={"DATABASE_URL": dsn})


async def test_migration_rollback_conversation(
    start_rollbot: StartBot,
    prisma_db: PrismaProject,
    tmp_path: Path,
) -> None:
    bot = await start(start_rollbot, prisma_db, tmp_path)

    card = await ready_to_approve(bot, f"db {INIT}", "failed_migration")
    shown = text_of(card)
    assert ADD_POSTS in shown and f"{ADD_POSTS}, {ADD_ROLE}" in shown and "pg_dump" in shown

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))

    assert await prisma_db.tables() == {"users", "_prisma_migrations"}
    assert await prisma_db.columns("users") == ["id", "email"]
    assert await prisma_db.migration_rows() == {
        INIT: (True, False),
        ADD_ROLE: (True, True),
        ADD_POSTS: (True, True),
    }
    (backup,) = (tmp_path / "backups").iterdir()
    thread = thread_text(bot.fake, card)
    (rb,) = await bot.store.find()
    # The thread names the backup, its size and folder; the file is named after the rollback.
    assert backup.name.endswith(f"_pre-rollback_{rb.id}.dump")
    assert f"Backup written: {backup.name} (" in thread and str(tmp_path / "backups") in thread
    assert f"is at migration {INIT}: rolled back {ADD_POSTS}, {ADD_ROLE}" in thread
    assert "database" in thread and "Verification passed" in thread
    assert (rb.state, rb.current_version, rb.target_version) == (State.SUCCEEDED, ADD_POSTS, INIT)
    assert await bot.store.locks() == []
    assert PASSWORD not in bot.log() and PASSWORD not in thread


async def test_broken_down_sql_fails_and_the_thread_says_nothing_changed(
    start_rollbot: StartBot,
    prisma_db: PrismaProject,
    tmp_path: Path,
) -> None:
    (prisma_db.migrations_dir / ADD_ROLE / "down.sql").write_text(
        "ALTER TABLE users DROP COLUMN nonexistent;"
    )
    before = await prisma_db.snapshot()
    bot = await start(start_rollbot, prisma_db, tmp_path)

    card = await ready_to_approve(bot, f"db {INIT}", "failed_migration")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "What to do next" in thread_text(bot.fake, card))

    assert await prisma_db.snapshot() == before
    (backup,) = (tmp_path / "backups").iterdir()
    thread = thread_text(bot.fake, card)
    assert f"down.sql of migration {ADD_ROLE} failed" in thread
    assert 'column "nonexistent" of relation "users" does not exist' in thread
    assert f"unchanged (still at migration {ADD_POSTS})" in thread and str(backup) in thread
    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED
    assert (rb.target_state or "").startswith(
        f"the database is unchanged (still at migration {ADD_POSTS})"
    )
    assert await bot.store.locks() == []
    assert PASSWORD not in bot.log() and PASSWORD not in thread
