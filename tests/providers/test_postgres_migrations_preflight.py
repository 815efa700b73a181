"""The postgres_migrations provider's preflight and identity, on a real PostgreSQL."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import asyncpg
import pytest

from providers.base import NotFound, Refused
from providers.capabilities import Describe, Preflight, PreflightReport, Verdict
from providers.pg_preflight import down_sql_drops
from providers.postgres_migrations import PRISMA_LOCK
from tests.support.migrations import (
    ADD_POSTS,
    ADD_ROLE,
    INIT,
    MIGRATIONS,
    PrismaProject,
    ProviderFactory,
    backup_files,
)
from tests.support.progress import Recorder

CHECKS = ["down-migrations", "backup-writable", "checksums", "failed-migrations", "prisma-lock"]


def check(report: PreflightReport, name: str) -> tuple[Verdict, str]:
    """Return the verdict and why of the check called `name`."""
    (found,) = [c for c in report.checks if c.name == name]
    assert "\n" not in found.why
    return found.verdict, found.why


def exact(name: str) -> str:
    """A migration's exact identity: its name and the start of its checksum."""
    checksum = hashlib.sha256(MIGRATIONS[name][0].encode()).hexdigest()
    return f"migration {name} (checksum {checksum[:12]})"


def fake_pg_dump(folder: Path, version: str) -> Path:
    """A pg_dump that says it is `version`, beside the real pg_restore."""
    folder.mkdir()
    fake = folder / "pg_dump"
    fake.write_text(f'#!/bin/sh\necho "pg_dump (PostgreSQL) {version}"\n')
    fake.chmod(0o755)
    (folder / "pg_restore").symlink_to(shutil.which("pg_restore") or "/usr/bin/pg_restore")
    return folder


async def test_identity_now_is_the_newest_applied_migration(
    prisma_db: PrismaProject, make_provider: ProviderFactory
) -> None:
    provider = make_provider(prisma_db)
    assert isinstance(provider, Describe) and isinstance(provider, Preflight)

    identity = await provider.identity_now()

    assert identity.version == ADD_POSTS
    assert identity.exact == exact(ADD_POSTS)
    await provider.rollback(ADD_ROLE, Recorder())
    assert (await provider.identity_now()).exact == exact(ADD_ROLE)


async def test_preflight_passes_says_what_each_down_sql_drops_and_changes_nothing(
    prisma_db: PrismaProject, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    provider = make_provider(prisma_db)
    before = await prisma_db.snapshot()
    rows = await prisma_db.migration_rows()

    report = await provider.preflight(INIT)

    assert report.current is not None and report.current.exact == exact(ADD_POSTS)
    assert report.target.version == INIT and report.target.exact == exact(INIT)
    assert [c.name for c in report.checks] == CHECKS
    assert check(report, "down-migrations") == (
        Verdict.PASS,
        f"every migration undone has a down.sql: {ADD_POSTS}, {ADD_ROLE}",
    )
    verdict, why = check(report, "backup-writable")
    assert verdict is Verdict.PASS
    assert why.startswith(f"{tmp_path / 'backups'} can be made and written; pg_dump 15")
    assert why.endswith(" and pg_restore found; the server is 15")
    assert check(report, "checksums") == (
        Verdict.PASS,
        "every migration undone has the migration.sql that was applied",
    )
    assert check(report, "failed-migrations") == (Verdict.PASS, "no failed migration")
    assert check(report, "prisma-lock") == (
        Verdict.PASS,
        "no prisma migrate holds its lock on the database now",
    )
    assert report.changes == [
        f"migrations undone: {ADD_POSTS} (drops table posts: data lost, backup taken), "
        f"{ADD_ROLE} (drops index users_role_idx, drops column users.role: data lost, "
        "backup taken)"
    ]
    assert await prisma_db.snapshot() == before
    assert await prisma_db.migration_rows() == rows
    assert not (tmp_path / "backups").exists()


async def test_down_migrations_fails_naming_each_missing_down_sql(
    prisma_db: PrismaProject, make_provider: ProviderFactory
) -> None:
    (prisma_db.migrations_dir / ADD_ROLE / "down.sql").unlink()
    (prisma_db.migrations_dir / ADD_POSTS / "down.sql").write_text("  \n")

    report = await make_provider(prisma_db).preflight(INIT)

    assert check(report, "down-migrations") == (
        Verdict.FAIL,
        f"no usable down.sql: {ADD_POSTS} (empty down.sql), {ADD_ROLE} (no down.sql)",
    )
    assert report.changes == [
        f"migrations undone: {ADD_POSTS} (empty down.sql: cannot be undone), "
        f"{ADD_ROLE} (no down.sql: cannot be undone)"
    ]


async def test_backup_writable_fails_when_the_folder_cannot_be_made(
    prisma_db: PrismaProject, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")

    report = await make_provider(prisma_db, backup_dir=blocker / "backups").preflight(ADD_ROLE)

    assert check(report, "backup-writable") == (
        Verdict.FAIL,
        f"{blocker / 'backups'} cannot be made: {blocker} is not a folder",
    )


async def test_backup_writable_writes_nothing_into_an_existing_folder(
    prisma_db: PrismaProject, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    (tmp_path / "backups").mkdir()

    report = await make_provider(prisma_db).preflight(ADD_ROLE)

    assert check(report, "backup-writable")[1].startswith(f"{tmp_path / 'backups'} is writable;")
    assert list((tmp_path / "backups").iterdir()) == []
    assert backup_files(tmp_path) == []


async def test_backup_writable_fails_without_pg_dump_or_with_an_older_one(
    prisma_db: PrismaProject, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    report = await make_provider(prisma_db, pg_bin_dir=empty).preflight(ADD_ROLE)

    assert check(report, "backup-writable") == (
        Verdict.FAIL,
        f"pg_dump was not found in {empty}; set pg_bin_dir.",
    )

    old = fake_pg_dump(tmp_path / "old", "12.4")
    report = await make_provider(prisma_db, pg_bin_dir=old).preflight(ADD_ROLE)

    assert check(report, "backup-writable") == (
        Verdict.FAIL,
        "pg_dump 12 is older than the server (15): it refuses to dump it",
    )


async def test_checksums_warn_when_a_migration_sql_changed_since_it_was_applied(
    prisma_db: PrismaProject, make_provider: ProviderFactory
) -> None:
    script = prisma_db.migrations_dir / ADD_POSTS / "migration.sql"
    script.write_text(script.read_text() + "\n-- edited after it was applied\n")

    report = await make_provider(prisma_db).preflight(INIT)

    assert check(report, "checksums") == (
        Verdict.WARN,
        f"{ADD_POSTS}/migration.sql differs from what was applied (checksum): its down.sql "
        "may not match the database",
    )


async def test_failed_migrations_warn_with_the_p3009_note(
    prisma_db: PrismaProject, make_provider: ProviderFactory
) -> None:
    failed = "20240401000000_add_tags"
    prisma_db.write(failed, "CREATE TABLE tags (id SERIAL PRIMARY KEY);", "DROP TABLE tags;")
    await prisma_db.record_failed(failed, 'Database error: relation "tags" already exists')
    provider = make_provider(prisma_db)

    verdict, why = check(await provider.preflight(ADD_ROLE), "failed-migrations")

    assert verdict is Verdict.WARN
    assert why.startswith(f"migration {failed} FAILED (started ")
    assert why.endswith(
        "left as it is: prisma migrate deploy stops with P3009 until it is resolved "
        f"(prisma migrate resolve --rolled-back {failed})"
    )
    with pytest.raises(Refused, match="FAILED"):
        await provider.preflight(failed)


async def test_prisma_lock_warns_while_prisma_migrate_holds_it(
    prisma_db: PrismaProject, make_provider: ProviderFactory
) -> None:
    deploy = await asyncpg.connect(prisma_db.dsn, timeout=10)
    try:
        await deploy.execute("SELECT pg_advisory_lock($1)", PRISMA_LOCK)
        report = await make_provider(prisma_db).preflight(ADD_ROLE)
    finally:
        await deploy.close()

    assert check(report, "prisma-lock") == (
        Verdict.WARN,
        "prisma migrate holds its lock on the database now (a deploy is in progress): the "
        "rollback stops, changing nothing, while it does",
    )


async def test_an_unknown_version_raises(
    prisma_db: PrismaProject, make_provider: ProviderFactory
) -> None:
    with pytest.raises(NotFound, match="No applied migration `20990101000000_nope`"):
        await make_provider(prisma_db).preflight("20990101000000_nope")


def test_down_sql_drops_reads_prisma_and_hand_written_sql() -> None:
    prisma = (
        '-- DropForeignKey\nALTER TABLE "posts" DROP CONSTRAINT "posts_user_id_fkey";\n'
        '-- DropIndex\nDROP INDEX "users_role_idx";\n'
        '-- AlterTable\nALTER TABLE "users" DROP COLUMN "role",\nDROP COLUMN "bio";\n'
        '/* DropTable */\nDROP TABLE IF EXISTS "public"."posts", "tags";\n'
        'ALTER TABLE "users" ALTER COLUMN "email" DROP NOT NULL;\n'
        'TRUNCATE TABLE audit;\nDELETE FROM sessions WHERE true;\nDROP TYPE "Role";\n'
    )

    assert down_sql_drops(prisma) == (
        [
            "drops index users_role_idx",
            "drops column users.role",
            "drops column users.bio",
            "drops table public.posts",
            "drops table tags",
            "empties table audit",
            "deletes rows of sessions",
            "drops type Role",
        ],
        True,
    )
    assert down_sql_drops('DROP INDEX "a_idx";\nCREATE INDEX b ON t (c);') == (
        ["drops index a_idx"],
        False,
    )


async def test_a_down_sql_that_drops_no_data_says_so(
    prisma_db: PrismaProject, make_provider: ProviderFactory
) -> None:
    (prisma_db.migrations_dir / ADD_POSTS / "down.sql").write_text(
        "ALTER TABLE posts RENAME TO articles;"
    )

    report = await make_provider(prisma_db).preflight(ADD_ROLE)

    assert report.changes == [
        f"migrations undone: {ADD_POSTS} (no DROP TABLE/COLUMN found: no data dropped, "
        "backup taken)"
    ]
