"""postgres_migrations as the field meets it: Prisma URLs, poolers, backups that restore."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from providers.base import Refused, RollbackFailed
from providers.pg_backups import PRE_ROLLBACK, PgBackups
from providers.postgres_migrations import split_dsn
from providers.prisma_history import prisma_checksum_matches
from tests.support.migrations import (
    ADD_POSTS,
    ADD_ROLE,
    INIT,
    MIGRATIONS,
    SEED_ROWS,
    PgDatabaseFactory,
    PrismaProject,
    ProviderFactory,
    backup_files,
)
from tests.support.progress import Recorder

PRISMA_ARGS = "schema=app&connection_limit=5&pool_timeout=10&socket_timeout=30&sslmode=prefer"


async def app_schema_project(pg_database: PgDatabaseFactory, tmp_path: Path) -> PrismaProject:
    """Three migrations applied in schema `app` (public stays empty), as Prisma does it."""
    dsn = await pg_database()
    setup = PrismaProject(dsn, tmp_path / "prisma" / "migrations")
    await setup.execute("CREATE SCHEMA app")
    # asyncpg sends unknown query arguments as settings: this helper works in schema app.
    project = PrismaProject(f"{dsn}?search_path=app", tmp_path / "prisma" / "migrations")
    for name, (up, down) in MIGRATIONS.items():
        project.write(name, up, down)
        await project.apply(name)
    await project.execute(SEED_ROWS)
    assert await setup.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []
    return project


@pytest.mark.parametrize(
    ("query", "asyncpg_query", "libpq_query", "schema"),
    [
        (PRISMA_ARGS, "sslmode=prefer", "sslmode=prefer", "app"),
        (
            "sslmode=require&sslaccept=strict",
            "sslmode=verify-full",
            "sslmode=verify-full",
            "public",
        ),
        (
            "sslmode=require&sslcert=ca.pem",
            "sslmode=require&sslrootcert=ca.pem",
            "sslmode=require&sslrootcert=ca.pem",
            "public",
        ),
        (
            "pgbouncer=true&connect_timeout=3&application_name=web",
            "application_name=web",
            "connect_timeout=3&application_name=web",
            "public",
        ),
    ],
)
def test_prisma_arguments_are_translated(
    query: str, asyncpg_query: str, libpq_query: str, schema: str
) -> None:
    target = split_dsn(SecretStr(f"postgresql://app:pw@db:5432/shop?{query}"), "DATABASE_URL")
    assert urlsplit(target.dsn).query == asyncpg_query
    assert urlsplit(target.public_dsn).query == libpq_query
    assert target.schema == schema
    assert target.pooled == ("pgbouncer=true" in query)


def test_a_pkcs12_identity_is_refused_with_what_to_give_instead() -> None:
    with pytest.raises(Refused, match="sslidentity"):
        split_dsn(SecretStr("postgresql://u@h/db?sslidentity=id.p12&sslpassword=x"), "DATABASE_URL")


async def test_a_prisma_url_with_a_schema_is_read_rolled_back_and_backed_up(
    pg_database: PgDatabaseFactory, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    project = await app_schema_project(pg_database, tmp_path)
    base = project.dsn.split("?")[0]
    provider = make_provider(project, f"{base}?{PRISMA_ARGS}")

    assert await provider.current_version() == ADD_POSTS
    await provider.rollback(INIT, Recorder())

    rows = await project.sql("SELECT migration_name, rolled_back_at FROM app._prisma_migrations")
    assert sum(r["rolled_back_at"] is not None for r in rows) == 2
    tables = await project.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'app'")
    assert {r["tablename"] for r in tables} == {"users", "_prisma_migrations"}
    (backup,) = backup_files(tmp_path)
    listing = subprocess.run(
        ["pg_restore", "--list", str(tmp_path / "backups" / backup)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert " app users " in listing and " public " not in listing.replace("SCHEMA - public", "")


async def test_through_pgbouncer_in_transaction_mode(
    pg_database: PgDatabaseFactory,
    make_provider: ProviderFactory,
    tmp_path: Path,
    pgbouncer: str,
) -> None:
    project = await app_schema_project(pg_database, tmp_path)
    database = urlsplit(project.dsn).path
    provider = make_provider(project, f"{pgbouncer}{database}?pgbouncer=true&schema=app")

    assert await provider.current_version() == ADD_POSTS
    assert "at migration" in await provider.describe_state()


async def test_a_dump_pg_restore_cannot_read_is_no_backup(
    prisma_db: PrismaProject, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    # A pg_dump that exits 0 after writing a truncated file, as a full disk or a killed
    # process can leave one.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pg_dump"
    fake.write_text(
        '#!/bin/sh\nfor a in "$@"; do case "$a" in --file=*) printf PGDMP > "${a#--file=}";; '
        "esac; done\nexit 0\n"
    )
    fake.chmod(0o755)
    (bin_dir / "pg_restore").symlink_to(shutil.which("pg_restore") or "/usr/bin/pg_restore")
    provider = make_provider(prisma_db, pg_bin_dir=bin_dir)
    before = await prisma_db.snapshot()

    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback(INIT, Recorder())

    assert "pg_restore cannot read" in failed.value.message
    assert "nothing was changed" in failed.value.message
    assert await prisma_db.snapshot() == before
    assert backup_files(tmp_path) == []


async def test_older_backups_beyond_keep_backups_are_removed(
    prisma_db: PrismaProject, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    provider = make_provider(prisma_db, keep_backups=2)
    backups = PgBackups(provider.settings, provider.describe_state)
    target = split_dsn(SecretStr(prisma_db.dsn), "DATABASE_URL")
    names = []
    for _ in range(3):
        progress = Recorder()
        names.append((await backups.take(target, PRE_ROLLBACK, progress)).name)
    assert backup_files(tmp_path) == sorted(names[1:])
    assert f"Removed 1 older backup(s) (keep_backups: 2): {names[0]}" in progress.text
    # Another database's backups in the same folder are not this one's to prune.
    assert len(await provider.backups()) == 2


@pytest.mark.parametrize(
    ("applied", "now", "matches"),
    [
        (
            b"CREATE TABLE a (id int);\nSELECT 1;\n",
            b"CREATE TABLE a (id int);\r\nSELECT 1;\r\n",
            True,
        ),
        (
            b"CREATE TABLE a (id int);\r\nSELECT 1;\r\n",
            b"CREATE TABLE a (id int);\nSELECT 1;\n",
            True,
        ),
        (b"SELECT 1;\n", b"SELECT 1;\n", 1),
        (b"SELECT 1;\n", b"SELECT 1;", 0),  # a trailing newline is a change, to Prisma too
        (b"SELECT 1;\n", b"SELECT 2;\n", 0),
    ],
)
def test_checksums_compare_as_prisma_compares_them(
    applied: bytes, now: bytes, matches: int
) -> None:
    assert prisma_checksum_matches(now, hashlib.sha256(applied).hexdigest()) is bool(matches)


def test_an_old_checksum_without_zero_padding_still_matches() -> None:
    script = next(
        s
        for s in (f"SELECT {i};\n".encode() for i in range(1000))
        if any(b < 16 for b in hashlib.sha256(s).digest())
    )
    old = "".join(f"{b:x}" for b in hashlib.sha256(script).digest())
    assert len(old) < 64 and prisma_checksum_matches(script, old)
    assert not prisma_checksum_matches(script + b"--", old)


async def test_a_migration_checked_out_with_crlf_line_endings_is_not_reported_changed(
    prisma_db: PrismaProject, make_provider: ProviderFactory
) -> None:
    for name in (ADD_ROLE, ADD_POSTS):
        path = prisma_db.migrations_dir / name / "migration.sql"
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    plan = await make_provider(prisma_db).plan(INIT)
    assert not [w for w in plan.warnings if "differs from what was applied" in w]
    (prisma_db.migrations_dir / ADD_POSTS / "migration.sql").write_text("SELECT 'edited';\n")
    plan = await make_provider(prisma_db).plan(INIT)
    assert [w for w in plan.warnings if "differs from what was applied" in w]
