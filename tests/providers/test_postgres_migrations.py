"""The postgres_migrations provider against a real PostgreSQL and real pg_dump/pg_restore."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from providers.base import NotFound, ProviderError, Refused, RollbackFailed
from providers.postgres_migrations import (
    PostgresMigrationsProvider,
    PostgresMigrationsSettings,
    split_dsn,
)
from tests.support.migrations import (
    ADD_POSTS,
    ADD_ROLE,
    INIT,
    PgDatabaseFactory,
    PrismaProject,
    ProviderFactory,
    backup_files,
    with_database,
)
from tests.support.progress import Recorder

PASSWORD = "s3cr3t-Pa55word"


async def test_versions_are_applied_migrations_newest_first(
    prisma_db: PrismaProject,
    make_provider: ProviderFactory,
) -> None:
    provider = make_provider(prisma_db)

    versions = await provider.list_versions()

    assert [v.name for v in versions] == [ADD_POSTS, ADD_ROLE, INIT]
    assert [v.name for v in versions if v.current] == [ADD_POSTS]
    assert [v.name for v in versions if v.previous_stable] == [ADD_ROLE]
    assert all(v.detail.startswith("applied ") for v in versions)
    assert await provider.current_version() == ADD_POSTS
    assert await provider.describe_state() == (
        f"database {prisma_db.dsn.rsplit('/', 1)[1]} is at migration {ADD_POSTS}"
    )


async def test_failed_migration_is_shown_as_such_and_left_alone(
    prisma_db: PrismaProject,
    make_provider: ProviderFactory,
) -> None:
    failed = "20240401000000_add_tags"
    prisma_db.write(failed, "CREATE TABLE tags (id SERIAL PRIMARY KEY);", "DROP TABLE tags;")
    await prisma_db.record_failed(failed, 'Database error: relation "tags" already exists')
    provider = make_provider(prisma_db)

    versions = await provider.list_versions()
    state = await provider.describe_state()
    plan = await provider.plan(INIT)

    assert [v.name for v in versions] == [failed, ADD_POSTS, ADD_ROLE, INIT]
    assert "FAILED" in versions[0].detail and "never finished" in versions[0].detail
    assert not versions[0].current and versions[1].current
    assert f"migration {failed} FAILED" in state and f"at migration {ADD_POSTS}" in state
    assert any(failed in w and "left as it is" in w for w in plan.warnings)
    with pytest.raises(Refused, match="FAILED"):
        await provider.plan(failed)


async def test_plan_lists_the_migrations_to_undo_newest_first_and_the_backup(
    prisma_db: PrismaProject,
    make_provider: ProviderFactory,
    tmp_path: Path,
) -> None:
    provider = make_provider(prisma_db)

    plan = await provider.plan(INIT)

    text = "\n".join(plan.steps)
    assert "pg_dump -Fc" in text and str(tmp_path / "backups") in text
    assert f"{ADD_POSTS}, {ADD_ROLE}" in text and INIT not in text
    assert backup_files(tmp_path) == []
    with pytest.raises(NotFound, match="No applied migration `20990101000000_nope`"):
        await provider.plan("20990101000000_nope")
    with pytest.raises(Refused, match="already at migration"):
        await provider.plan(ADD_POSTS)


async def test_rollback_undoes_two_migrations_after_a_backup(
    prisma_db: PrismaProject,
    make_provider: ProviderFactory,
    tmp_path: Path,
) -> None:
    provider = make_provider(prisma_db)
    progress = Recorder()

    outcome = await provider.rollback(INIT, progress)

    assert await prisma_db.tables() == {"users", "_prisma_migrations"}
    assert await prisma_db.columns("users") == ["id", "email"]
    emails = await prisma_db.sql("SELECT email FROM users ORDER BY email")
    assert [r["email"] for r in emails] == ["ada@example.com", "bob@example.com"]
    assert await prisma_db.migration_rows() == {
        INIT: (True, False),
        ADD_ROLE: (True, True),
        ADD_POSTS: (True, True),
    }
    assert await provider.current_version() == INIT
    (backup,) = backup_files(tmp_path)
    database = prisma_db.dsn.rsplit("/", 1)[1]
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}\.\d{{3}}Z_{database}_pre-rollback\.dump", backup)
    size = (tmp_path / "backups" / backup).stat().st_size
    assert stat.S_IMODE((tmp_path / "backups" / backup).stat().st_mode) == 0o600
    assert f"Backup written: {backup} (" in progress.text
    assert (await provider.backups())[0].size_bytes == size
    # Newest first, as the transaction ran them.
    assert progress.text.index(ADD_POSTS) < progress.text.index(f"down.sql of {ADD_ROLE}")
    assert outcome.summary.startswith(f"Database {database} is at migration {INIT}")
    assert backup in outcome.notes[0]


async def test_broken_down_sql_leaves_the_database_exactly_as_before(
    prisma_db: PrismaProject,
    make_provider: ProviderFactory,
    tmp_path: Path,
) -> None:
    # The newest down.sql works and runs first; the next one fails, so both must be undone.
    (prisma_db.migrations_dir / ADD_ROLE / "down.sql").write_text(
        "ALTER TABLE users DROP COLUMN nonexistent;"
    )
    provider = make_provider(prisma_db)
    before = await prisma_db.snapshot()

    with pytest.raises(RollbackFailed) as caught:
        await provider.rollback(INIT, Recorder())

    assert await prisma_db.snapshot() == before
    assert "posts" in before["rows"] and "_prisma_migrations" in before["rows"]
    message, state = caught.value.message, caught.value.target_state or ""
    assert f"down.sql of migration {ADD_ROLE} failed" in message
    assert 'column "nonexistent" of relation "users" does not exist' in message
    (backup,) = backup_files(tmp_path)
    assert f"unchanged (still at migration {ADD_POSTS})" in state
    assert str(tmp_path / "backups" / backup) in state
    assert await provider.current_version() == ADD_POSTS


async def test_missing_down_sql_is_refused_before_any_backup(
    prisma_db: PrismaProject,
    make_provider: ProviderFactory,
    tmp_path: Path,
) -> None:
    (prisma_db.migrations_dir / ADD_POSTS / "down.sql").unlink()
    (prisma_db.migrations_dir / ADD_ROLE / "down.sql").write_text("  \n")
    provider = make_provider(prisma_db)
    before = await prisma_db.snapshot()

    with pytest.raises(Refused) as planned:
        await provider.plan(INIT)
    with pytest.raises(Refused) as ran:
        await provider.rollback(INIT, Recorder())

    for caught in (planned, ran):
        assert f"{ADD_POSTS} (no down.sql)" in caught.value.message
        assert f"{ADD_ROLE} (empty down.sql)" in caught.value.message
    assert backup_files(tmp_path) == []
    assert await prisma_db.snapshot() == before


async def test_restore_brings_back_rows_deleted_after_the_backup(
    prisma_db: PrismaProject,
    make_provider: ProviderFactory,
) -> None:
    provider = make_provider(prisma_db)
    await provider.rollback(ADD_ROLE, Recorder())
    assert "posts" not in await prisma_db.tables()
    await prisma_db.execute("DELETE FROM users WHERE email = 'bob@example.com'")
    (taken,) = await provider.backups()
    progress = Recorder()

    outcome = await provider.restore(None, progress)

    emails = await prisma_db.sql("SELECT email FROM users ORDER BY email")
    assert [r["email"] for r in emails] == ["ada@example.com", "bob@example.com"]
    titles = await prisma_db.sql("SELECT title FROM posts ORDER BY title")
    assert len(titles) == 2
    assert await prisma_db.columns("users") == ["id", "email", "role"]
    assert (await prisma_db.migration_rows())[ADD_POSTS] == (True, False)
    assert await provider.current_version() == ADD_POSTS
    newest, restored = await provider.backups()
    assert restored == taken and newest.kind == "pre-restore"
    assert outcome.summary.startswith(f"Restored {taken.name}")
    assert newest.name in outcome.notes[0] and newest.name in progress.text


async def test_restore_accepts_only_backups_the_folder_lists(
    prisma_db: PrismaProject,
    make_provider: ProviderFactory,
    tmp_path: Path,
) -> None:
    provider = make_provider(prisma_db)
    with pytest.raises(NotFound, match="No pre-rollback backup"):
        await provider.restore(None, Recorder())
    await provider.rollback(ADD_ROLE, Recorder())
    (backup,) = backup_files(tmp_path)
    outside = tmp_path / "elsewhere.dump"
    outside.write_bytes((tmp_path / "backups" / backup).read_bytes())

    for name in ("../elsewhere.dump", str(outside), f"../backups/{backup}", "x.dump", ""):
        with pytest.raises(NotFound):
            await provider.restore(name, Recorder())

    assert backup_files(tmp_path) == [backup]
    assert "posts" not in await prisma_db.tables()


async def test_backups_are_listed_newest_first_with_their_size(
    prisma_db: PrismaProject,
    make_provider: ProviderFactory,
    tmp_path: Path,
) -> None:
    provider = make_provider(prisma_db)
    await provider.rollback(ADD_ROLE, Recorder())
    await provider.rollback(INIT, Recorder())
    (tmp_path / "backups" / "notes.txt").write_text("not a backup")
    (tmp_path / "backups" / "20240101T000000.000Z_otherdb_pre-rollback.dump").write_text("x")

    found = await provider.backups()

    database = prisma_db.dsn.rsplit("/", 1)[1]
    ours = [name for name in backup_files(tmp_path) if f"_{database}_" in name]
    assert len(ours) == 2 and [b.name for b in found] == sorted(ours, reverse=True)
    assert found[0].created_at > found[1].created_at
    for backup in found:
        assert backup.size_bytes == (tmp_path / "backups" / backup.name).stat().st_size > 0
        assert backup.kind == "pre-rollback"
        assert f"{backup.name} (" in backup.describe()


def fake_pg_dump(folder: Path) -> Path:
    """A pg_dump that records how it was called and fails like a refused connection."""
    folder.mkdir()
    script = folder / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{folder}/argv"\n'
        f'printf "%s" "$PGPASSWORD" > "{folder}/password"\n'
        'echo "pg_dump: error: connection failed for $*" >&2\n'
        "exit 1\n"
    )
    script.chmod(0o755)
    return folder


async def test_password_never_appears_in_errors_logs_or_arguments(
    pg_database: PgDatabaseFactory,
    make_provider: ProviderFactory,
    tmp_path: Path,
) -> None:
    project = PrismaProject(await pg_database(), tmp_path / "migrations")
    project.write(INIT, "CREATE TABLE users (id INT);", "DROP TABLE users;")
    project.write(ADD_ROLE, "ALTER TABLE users ADD role TEXT;", "DROP TABLE nope;")
    await project.apply(INIT)
    await project.apply(ADD_ROLE)
    # The test server trusts every local user, so it accepts any password.
    database = project.dsn.rsplit("/", 1)[1]
    secret_dsn = with_database(project.dsn, database, PASSWORD)
    bin_dir = fake_pg_dump(tmp_path / "bin")
    texts: list[str] = []

    with capture_logs() as logs:
        failing_dump = make_provider(project, secret_dsn, pg_bin_dir=bin_dir)
        with pytest.raises(RollbackFailed) as dump:
            await failing_dump.rollback(INIT, Recorder())
        real = make_provider(project, secret_dsn)
        progress = Recorder()
        with pytest.raises(RollbackFailed) as down:
            await real.rollback(INIT, progress)
        unreachable = make_provider(
            project, secret_dsn.replace(":55432", ":1"), connect_timeout_seconds=2
        )
        with pytest.raises(ProviderError) as connect:
            await unreachable.describe_state()

    assert "The backup failed, so nothing was changed" in dump.value.message
    assert "[redacted]" not in (bin_dir / "argv").read_text()
    assert (bin_dir / "password").read_text() == PASSWORD
    assert 'table "nope" does not exist' in down.value.message
    assert "Connecting to database" in connect.value.message
    for caught in (dump, down, connect):
        texts += [caught.value.message, caught.value.target_state or "", str(caught.value)]
    texts += [progress.text, (bin_dir / "argv").read_text(), str(logs), *backup_files(tmp_path)]
    assert all(PASSWORD not in text for text in texts)
    assert await project.migration_rows() == {INIT: (True, False), ADD_ROLE: (True, False)}


async def test_missing_variable_is_named(
    prisma_db: PrismaProject,
    tmp_path: Path,
) -> None:
    settings = PostgresMigrationsSettings(
        provider="postgres_migrations", dsn_env="APP_DB_URL", backup_dir=tmp_path
    )
    provider = PostgresMigrationsProvider(settings)
    assert "APP_DB_URL" not in os.environ

    assert settings.secret_variables() == {"dsn_env": "APP_DB_URL"}
    with pytest.raises(Refused, match="APP_DB_URL is not set"):
        await provider.list_versions()


def test_dsn_is_split_so_the_password_travels_apart() -> None:
    dsn = SecretStr(f"postgresql://app:{PASSWORD}%21@db.internal:5433/shop?sslmode=require")

    target = split_dsn(dsn, "DATABASE_URL")

    assert target.public_dsn == "postgresql://app@db.internal:5433/shop?sslmode=require"
    assert (target.password, target.database) == (f"{PASSWORD}!", "shop")
    assert target.redact(f"x {PASSWORD}! y {PASSWORD}%21") == "x [redacted] y [redacted]"
    query = split_dsn(SecretStr(f"postgres://app@h/db?password={PASSWORD}"), "DATABASE_URL")
    assert (query.public_dsn, query.password) == ("postgres://app@h/db", PASSWORD)
    with pytest.raises(Refused, match="DATABASE_URL is not a postgresql:// URL"):
        split_dsn(SecretStr(f"host=h password={PASSWORD}"), "DATABASE_URL")
