"""PostgreSQL/Prisma migrations provider: undo migrations with their down.sql, after a backup.

What Prisma defines, and this provider relies on (read in prisma_history and prisma_undo):

- Migrations live in ``<migrations_dir>/<timestamp>_<name>/migration.sql``; the 14-digit
  timestamp prefix orders them. Prisma writes no down migrations: teams keep a ``down.sql``
  beside each ``migration.sql`` (Prisma's "generating down migrations" guide).
- ``_prisma_migrations`` holds one row per attempt: ``id, checksum, finished_at,
  migration_name, logs, rolled_back_at, started_at, applied_steps_count``. An applied
  migration has ``finished_at`` set and ``rolled_back_at`` null; a failed one was started
  and neither finished nor rolled back. ``checksum`` is the hex SHA-256 of migration.sql.
- ``prisma migrate`` holds ``pg_advisory_lock(72707369)`` while it runs.

Choices written down here:

- Versions are applied migrations by name, newest first; a failed migration is listed too,
  marked as such, but is never a target and is never touched: its changes may be partial,
  so its down.sql may not fit. The plan and the state say so.
- A rollback refuses before touching anything when a later migration has no (or an empty)
  down.sql; then backs up with ``pg_dump -Fc``; then runs every down.sql, newest first, and
  marks those rows rolled back, all in one transaction that also takes Prisma's lock.
- The DSN comes from an environment variable; pg_dump/pg_restore get it without its
  password (which travels in PGPASSWORD), so no process listing shows it, and every error
  text is scrubbed of it.
- A restore first backs up the database as it is ("pre-restore"), then runs pg_restore in a
  single transaction, so a failed restore changes nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from providers.base import (
    AuthRejected,
    Conflicting,
    NotFound,
    Outcome,
    Plan,
    Progress,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
    Version,
    say,
    sentence,
    state_or_unknown,
)
from providers.capabilities import BackupListing, Identity, PreflightReport
from providers.pg_backups import PRE_RESTORE, PRE_ROLLBACK, Backup, PgBackups, when
from providers.pg_connections import (
    DATABASE_ERRORS,
    connect,
    error_text,
    rollback_quietly,
    set_limits,
)
from providers.pg_preflight import PRISMA_LOCK, migration_identity, preflight_report
from providers.pg_urls import Target, split_dsn
from providers.prisma_history import (
    Migration,
    applied_migrations,
    failed_migrations,
    read_migrations,
)
from providers.prisma_undo import Undo, undo_list, undo_warnings
from providers.retry import retrying

log = structlog.get_logger(__name__)


class PostgresMigrationsSettings(BaseModel):
    """Settings of a `postgres_migrations` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["postgres_migrations"]
    dsn_env: str = Field(
        default="DATABASE_URL",
        description="Variable holding the database URL (postgresql://user:password@host/db).",
    )
    migrations_dir: Path = Field(
        default=Path("prisma/migrations"),
        description="Prisma migrations folder: <timestamp>_<name>/migration.sql and down.sql.",
    )
    backup_dir: Path = Field(description="Folder for pg_dump backups (created if missing).")
    pg_bin_dir: Path | None = Field(
        default=None, description="Folder holding pg_dump and pg_restore; default: PATH."
    )
    connect_timeout_seconds: float = Field(
        default=10, gt=0, description="Deadline of one connection attempt."
    )
    statement_timeout_seconds: float = Field(
        default=300, gt=0, description="Deadline of one SQL statement (reads and down.sql)."
    )
    lock_timeout_seconds: float = Field(
        default=10,
        gt=0,
        description="How long DDL may wait for a table lock before giving up (and changing "
        "nothing) instead of stalling the application behind it.",
    )
    backup_timeout_seconds: float = Field(
        default=900, gt=0, description="Deadline of pg_dump; the rollback aborts after it."
    )
    keep_backups: int = Field(
        default=10,
        ge=1,
        description="Backups of this database kept in backup_dir; older ones are removed "
        "after a new one is written and checked.",
    )
    restore_timeout_seconds: float = Field(
        default=1800, gt=0, description="Deadline of pg_restore (it runs in one transaction)."
    )

    def secret_variables(self) -> dict[str, str]:
        """Name the variable that holds the DSN."""
        return {"dsn_env": self.dsn_env}


class PostgresMigrationsProvider:
    """Undo Prisma migrations with their down.sql in one transaction, after a pg_dump."""

    restore_kind = "database"

    def __init__(self, settings: PostgresMigrationsSettings) -> None:
        self.settings = settings
        self._backups = PgBackups(settings, self._state_or_unknown)

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the newest applied migration."""
        applied = applied_migrations(await self._migrations())
        if not applied:
            raise NotFound(f"{self._database_name()} has no applied Prisma migration.")
        return applied[0].name

    async def list_versions(self) -> list[Version]:
        """Return applied migrations newest first, with failed ones marked and never current."""
        rows = await self._migrations()
        applied = applied_migrations(rows)
        listed = sorted([*applied, *failed_migrations(rows)], key=lambda m: m.name, reverse=True)
        current = applied[0] if applied else None
        previous = applied[1] if len(applied) > 1 else None
        return [
            Version(
                name=m.name,
                created_at=m.finished_at or m.started_at,
                current=m is current,
                previous_stable=m is previous,
                detail=m.failure() if m.failed else f"applied {when(m.finished_at)}",
            )
            for m in listed
        ]

    async def plan(self, target: str) -> Plan:
        """List the migrations that will be undone and the backup, changing nothing."""
        rows = await self._migrations()
        undo = undo_list(target, rows, self.settings.migrations_dir)
        database = self._database_name()
        steps = [
            f"Back up database {database} with pg_dump -Fc into {self.settings.backup_dir}.",
            "In one transaction, newest first, run down.sql of: "
            + ", ".join(u.migration.name for u in undo)
            + "; mark them rolled back in _prisma_migrations. Any error undoes all of it.",
        ]
        warnings = undo_warnings(target, rows, undo, self.settings.migrations_dir)
        return Plan(steps=steps, warnings=warnings)

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Back up, then undo the later migrations in one transaction."""
        started = time.monotonic()
        rows = await self._migrations()
        undo = undo_list(target, rows, self.settings.migrations_dir)
        current = undo[0].migration.name
        backup = await self._backups.take(self._target(), PRE_ROLLBACK, progress)
        names = ", ".join(u.migration.name for u in undo)
        await say(progress, f"Undoing in one transaction, newest first: {names}…")
        await self._run_down(undo, current, backup, progress)
        log.info(
            "postgres_migrations.rollback",
            target=target,
            undone=[u.migration.name for u in undo],
            backup=backup.name,
            seconds=round(time.monotonic() - started, 2),
        )
        return Outcome(
            summary=f"Database {self._database_name()} is at migration {target}: rolled "
            f"back {names} (newest first).",
            notes=[f"Backup taken before: {backup.describe()}; restore it to undo this."],
        )

    async def identity_now(self) -> Identity:
        """Return the newest applied migration and the checksum of what was applied."""
        applied = applied_migrations(await self._migrations())
        if not applied:
            raise NotFound(f"{self._database_name()} has no applied Prisma migration.")
        return migration_identity(applied[0])

    async def preflight(self, target: str) -> PreflightReport:
        """Check the down.sql files, the backup and Prisma's state; say what each undo drops."""
        rows = await self._migrations()
        return await preflight_report(target, rows, self.settings, self._target(), self._backups)

    async def describe_state(self) -> str:
        """Say which migration the database is at, and any failed one, asked from it."""
        rows = await self._migrations()
        applied = applied_migrations(rows)
        database = self._database_name()
        text = (
            f"database {database} is at migration {applied[0].name}"
            if applied
            else f"database {database} has no applied migration"
        )
        failed = "; ".join(m.failure() for m in failed_migrations(rows))
        return f"{text}; {failed}" if failed else text

    async def aclose(self) -> None:
        """Nothing to release: every operation opens and closes its own connection."""

    # -- backups and restore (the `restore database` and `backups database` commands) ------

    async def backups(self) -> list[Backup]:
        """Return this database's backups, newest first."""
        return await self._backups.listed(self._database_name())

    async def backup_listing(self) -> list[BackupListing]:
        """Return this database's backups as people see them, newest first."""
        return [
            BackupListing(b.name, b.created_at, b.size_bytes, b.kind, b.kind == PRE_ROLLBACK)
            for b in await self.backups()
        ]

    async def restore(self, name: str | None, progress: Progress) -> Outcome:
        """Restore a backup (the latest pre-rollback one by default) in one transaction."""
        chosen = await self._backups.chosen(self._database_name(), name)
        self._backups.binary("pg_restore")  # refuse before the pre-restore backup if missing
        await say(
            progress, f"Restoring {chosen.describe()}; first backing up the database as it is…"
        )
        target = self._target()
        before = await self._backups.take(target, PRE_RESTORE, progress, keep=chosen.name)
        await say(progress, f"Running pg_restore of {chosen.name} in one transaction…")
        error = await self._backups.restore(target, chosen)
        if error is not None:
            raise RollbackFailed(
                f"pg_restore of {chosen.name} failed: {error}",
                target_state=f"unchanged (pg_restore runs in one transaction): "
                f"{await self._state_or_unknown()}; backup of it: {before.name}",
            )
        state = await self._state_or_unknown()
        log.info("postgres_migrations.restore", backup=chosen.name, pre_restore=before.name)
        return Outcome(
            summary=f"Restored {chosen.name}: {state}.",
            notes=[
                f"The database as it was before the restore is in {before.describe()}.",
                "Tables created after the backup were left in place; check them by hand.",
            ],
        )

    # -- reading the database ---------------------------------------------------------------

    def _target(self) -> Target:
        """Read the DSN from its variable now (it may be set after start-up)."""
        variable = self.settings.dsn_env
        value = os.environ.get(variable)
        if not value:
            raise Refused(f"{variable} is not set: rollbot has no database URL to use.")
        return split_dsn(SecretStr(value), variable)

    async def _migrations(self) -> list[Migration]:
        """Read `_prisma_migrations` (a read: retried)."""
        return await retrying(
            lambda: read_migrations(self._target(), self.settings), deadline_seconds=30
        )

    def _database_name(self) -> str:
        return self._target().database

    async def _state_or_unknown(self) -> str:
        """Describe the state for an error message without raising a second error."""
        return await state_or_unknown(self.describe_state)

    # -- the mutation -----------------------------------------------------------------------

    async def _run_down(
        self, undo: Sequence[Undo], current: str, backup: Backup, progress: Progress
    ) -> None:
        """Run every down.sql and mark its row, in one transaction; never retried."""
        target = self._target()
        where = self.settings.backup_dir / backup.name
        unchanged = f"the database is unchanged (still at migration {current}); backup: {where}"
        try:
            async with connect(target, self.settings) as conn:
                await self._undo_all(conn, undo, target, unchanged, progress)
                await self._commit(conn, target, where)
        except (Transient, TimedOut, AuthRejected, NotFound) as exc:
            # Only the connection can fail this way: no statement ran.
            raise RollbackFailed(
                f"{sentence(exc.message)} No down.sql ran: {unchanged}.", target_state=unchanged
            ) from exc
        await say(
            progress, "Committed: the migrations are marked rolled back in _prisma_migrations."
        )

    async def _undo_all(
        self,
        conn: asyncpg.Connection,
        undo: Sequence[Undo],
        target: Target,
        unchanged: str,
        progress: Progress,
    ) -> None:
        """Open the transaction and run the down.sql files; on any error roll it all back."""
        await conn.execute("BEGIN")
        try:
            await set_limits(conn, target, self.settings)
            await self._take_prisma_lock(conn, unchanged)
            await self._check_still_applied(conn, undo, unchanged)
            for u in undo:
                await self._undo_one(conn, u, target, unchanged)
                await say(progress, f"Ran down.sql of {u.migration.name} (not committed yet).")
        except DATABASE_ERRORS as exc:
            await rollback_quietly(conn)
            raise RollbackFailed(
                f"Preparing the rollback failed: {error_text(exc, target)}. The transaction was "
                f"rolled back: {unchanged}.",
                target_state=unchanged,
            ) from exc
        except BaseException:
            await rollback_quietly(conn)
            raise

    async def _commit(self, conn: asyncpg.Connection, target: Target, where: Path) -> None:
        try:
            await conn.execute("COMMIT")
        except DATABASE_ERRORS as exc:
            raise RollbackFailed(
                f"COMMIT failed: {error_text(exc, target)}. Whether the migrations were rolled "
                "back is unknown; check the versions before anything else.",
                target_state=f"{await self._state_or_unknown()}; backup: {where}",
            ) from exc

    async def _take_prisma_lock(self, conn: asyncpg.Connection, unchanged: str) -> None:
        locked = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", PRISMA_LOCK)
        if not locked:
            raise Conflicting(
                "prisma migrate holds its lock on this database (a deploy is in progress); "
                f"nothing was run: {unchanged}.",
                target_state=unchanged,
            )

    async def _check_still_applied(
        self, conn: asyncpg.Connection, undo: Sequence[Undo], unchanged: str
    ) -> None:
        """Lock the rows to mark; refuse when someone changed them since they were read."""
        ids = [u.migration.id for u in undo]
        found = await conn.fetch(
            "SELECT id FROM _prisma_migrations WHERE id = ANY($1::varchar[]) "
            "AND finished_at IS NOT NULL AND rolled_back_at IS NULL FOR UPDATE",
            ids,
        )
        if len(found) != len(ids):
            raise Conflicting(
                f"_prisma_migrations changed since it was read; nothing was run: {unchanged}.",
                target_state=unchanged,
            )

    async def _undo_one(
        self, conn: asyncpg.Connection, undo: Undo, target: Target, unchanged: str
    ) -> None:
        name = undo.migration.name
        try:
            # No arguments: asyncpg sends the simple protocol, so a file of many statements runs.
            await conn.execute(undo.down_sql)
            await conn.execute(
                "UPDATE _prisma_migrations SET rolled_back_at = now() WHERE id = $1",
                undo.migration.id,
            )
        except DATABASE_ERRORS as exc:
            raise RollbackFailed(
                f"down.sql of migration {name} failed: {error_text(exc, target)}. The "
                f"transaction was rolled back: {unchanged}.",
                target_state=unchanged,
            ) from exc
