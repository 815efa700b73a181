"""Fresh PostgreSQL databases migrated the way Prisma does it, for the migrations provider.

`pg_database` makes a database per test (dropped after); `prisma_db` is one with a Prisma
migrations folder of three migrations, applied and recorded in `_prisma_migrations` exactly
as `prisma migrate deploy` records them, and a few rows in its tables.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from providers.postgres_migrations import PostgresMigrationsProvider, PostgresMigrationsSettings

# Prisma's own DDL for its table (schema engine, postgres flavour).
PRISMA_TABLE = """
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)
"""

INIT = "20240101000000_init"
ADD_ROLE = "20240201000000_add_user_role"
ADD_POSTS = "20240301000000_add_posts"
MIGRATIONS = {
    INIT: (
        "CREATE TABLE users (id SERIAL PRIMARY KEY, email TEXT NOT NULL UNIQUE);",
        "DROP TABLE users;",
    ),
    ADD_ROLE: (
        "ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member';\n"
        "CREATE INDEX users_role_idx ON users (role);",
        "DROP INDEX users_role_idx;\nALTER TABLE users DROP COLUMN role;",
    ),
    ADD_POSTS: (
        "CREATE TABLE posts (id SERIAL PRIMARY KEY, "
        "user_id INTEGER NOT NULL REFERENCES users (id), title TEXT NOT NULL);",
        "DROP TABLE posts;",
    ),
}
SEED_ROWS = """
INSERT INTO users (email, role) VALUES ('ada@example.com', 'admin'), ('bob@example.com', 'member');
INSERT INTO posts (user_id, title) SELECT id, 'hello from ' || email FROM users;
"""


def with_database(dsn: str, database: str, password: str | None = None) -> str:
    """Return `dsn` pointed at another database, optionally with a password."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':')[0] or 'postgres'}:{password}@{host}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


@dataclass
class PrismaProject:
    """A Prisma migrations folder and the database it migrates."""

    dsn: str
    migrations_dir: Path
    names: list[str] = field(default_factory=list)

    def write(self, name: str, up: str, down: str | None) -> None:
        """Write `<name>/migration.sql` and, unless None, `<name>/down.sql`."""
        folder = self.migrations_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "migration.sql").write_text(up)
        if down is not None:
            (folder / "down.sql").write_text(down)
        if name not in self.names:
            self.names.append(name)

    async def apply(self, name: str) -> None:
        """Run a migration and record it as `prisma migrate deploy` does."""
        up = (self.migrations_dir / name / "migration.sql").read_text()
        checksum = hashlib.sha256(up.encode()).hexdigest()
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await conn.execute(PRISMA_TABLE)
            row_id = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at) "
                "VALUES ($1, $2, $3, now())",
                row_id,
                checksum,
                name,
            )
            await conn.execute(up)
            await conn.execute(
                "UPDATE _prisma_migrations SET finished_at = now(), applied_steps_count = 1 "
                "WHERE id = $1",
                row_id,
            )
        finally:
            await conn.close()

    async def record_failed(self, name: str, logs: str) -> None:
        """Record a migration Prisma started and that failed half-way (never finished)."""
        up = (self.migrations_dir / name / "migration.sql").read_text()
        await self.sql(
            "INSERT INTO _prisma_migrations (id, checksum, migration_name, logs, started_at) "
            "VALUES ($1, $2, $3, $4, now())",
            str(uuid.uuid4()),
            hashlib.sha256(up.encode()).hexdigest(),
            name,
            logs,
        )

    async def execute(self, script: str) -> None:
        """Run a script of several statements on a fresh connection."""
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await conn.execute(script)
        finally:
            await conn.close()

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Run one query on a fresh connection and return its rows."""
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def snapshot(self) -> dict[str, Any]:
        """Return the schema, every row of every table and `_prisma_migrations`, comparable."""
        columns = await self.sql(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, ordinal_position"
        )
        indexes = await self.sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "ORDER BY indexname"
        )
        tables = sorted({r["table_name"] for r in columns})
        rows = {}
        for table in tables:
            found = await self.sql(f'SELECT * FROM "{table}"')  # names from the catalog
            rows[table] = sorted(tuple(map(str, r.values())) for r in found)
        return {
            "columns": [tuple(r.values()) for r in columns],
            "indexes": [tuple(r.values()) for r in indexes],
            "rows": rows,
        }

    async def migration_rows(self) -> dict[str, tuple[bool, bool]]:
        """Map each migration name to (finished, rolled back)."""
        found = await self.sql(
            "SELECT migration_name, finished_at, rolled_back_at FROM _prisma_migrations"
        )
        return {
            r["migration_name"]: (r["finished_at"] is not None, r["rolled_back_at"] is not None)
            for r in found
        }

    async def tables(self) -> set[str]:
        """Return the tables in the public schema."""
        found = await self.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in found}

    async def columns(self, table: str) -> list[str]:
        """Return a table's columns in order."""
        found = await self.sql(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
            table,
        )
        return [r["column_name"] for r in found]


PgDatabaseFactory = Callable[[], Awaitable[str]]


@pytest.fixture
async def pg_database(pg_dsn: str) -> AsyncIterator[PgDatabaseFactory]:
    """Factory of fresh, empty databases (their DSN), all dropped after the test."""
    made: list[str] = []

    async def make() -> str:
        name = f"rollbot_test_{secrets.token_hex(6)}"
        conn = await asyncpg.connect(pg_dsn, timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        made.append(name)
        return with_database(pg_dsn, name)

    yield make
    conn = await asyncpg.connect(pg_dsn, timeout=10)
    try:
        for name in made:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def prisma_db(pg_database: PgDatabaseFactory, tmp_path: Path) -> PrismaProject:
    """A database with three Prisma migrations applied (init, add_user_role, add_posts) and rows."""
    project = PrismaProject(await pg_database(), tmp_path / "prisma" / "migrations")
    for name, (up, down) in MIGRATIONS.items():
        project.write(name, up, down)
        await project.apply(name)
    await project.execute(SEED_ROWS)
    return project


ProviderFactory = Callable[..., PostgresMigrationsProvider]


@pytest.fixture
async def make_provider(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[ProviderFactory]:
    """Build providers for a project (its DSN in DATABASE_URL); close them after."""
    made: list[PostgresMigrationsProvider] = []

    def make(project: PrismaProject, dsn: str | None = None, **settings: Any) -> Any:
        monkeypatch.setenv("DATABASE_URL", dsn or project.dsn)
        values: dict[str, Any] = {
            "provider": "postgres_migrations",
            "migrations_dir": project.migrations_dir,
            "backup_dir": tmp_path / "backups",
            **settings,
        }
        provider = PostgresMigrationsProvider(PostgresMigrationsSettings(**values))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def backup_files(tmp_path: Path) -> list[str]:
    folder = tmp_path / "backups"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
