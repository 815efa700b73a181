"""PostgreSQL/Prisma migrations provider: undo migrations with their down.sql, after a backup.

What Prisma defines, and this module relies on:

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

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
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
    ProviderError,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
    Version,
    say,
    sentence,
    state_or_unknown,
)
from providers.pg_backups import (
    MAX_ERROR_TEXT,
    PRE_RESTORE,
    PRE_ROLLBACK,
    Backup,
    PgBackups,
    when,
)
from providers.pg_urls import Target, split_dsn
from providers.retry import retrying

log = structlog.get_logger(__name__)

# Prisma's own migration lock: holding it keeps `prisma migrate` out while we run.
PRISMA_LOCK = 72707369
CHECKSUM_LENGTH = 64  # a zero-padded SHA-256, as Prisma writes checksums now

MIGRATIONS_QUERY = """
SELECT id, migration_name, checksum, started_at, finished_at, rolled_back_at, logs
FROM _prisma_migrations
ORDER BY migration_name, started_at
"""


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


@dataclass(frozen=True)
class Migration:
    """One row of `_prisma_migrations`."""

    id: str
    name: str
    checksum: str
    started_at: datetime | None
    finished_at: datetime | None
    rolled_back_at: datetime | None
    logs: str | None

    @property
    def applied(self) -> bool:
        """Return True when the migration finished and was not rolled back."""
        return self.finished_at is not None and self.rolled_back_at is None

    @property
    def failed(self) -> bool:
        """Return True when the migration started and neither finished nor was rolled back."""
        return self.finished_at is None and self.rolled_back_at is None

    def failure(self) -> str:
        """Say in one line how this migration failed."""
        logs = (self.logs or "").strip().splitlines()
        why = f"; Prisma logged “{logs[0][:200]}”" if logs else ""
        return (
            f"migration {self.name} FAILED (started {when(self.started_at)}, never finished{why})"
        )


@dataclass(frozen=True)
class Undo:
    """A later migration to undo, with the down.sql read before anything changed."""

    migration: Migration
    down_sql: str


class PostgresMigrationsProvider:
    """Undo Prisma migrations with their down.sql in one transaction, after a pg_dump."""

    def __init__(self, settings: PostgresMigrationsSettings) -> None:
        self.settings = settings
        self._backups = PgBackups(settings, self._state_or_unknown)

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the newest applied migration."""
        applied = _applied(await self._migrations())
        if not applied:
            raise NotFound(f"{self._database_name()} has no applied Prisma migration.")
        return applied[0].name

    async def list_versions(self) -> list[Version]:
        """Return applied migrations newest first, with failed ones marked and never current."""
        rows = await self._migrations()
        applied = _applied(rows)
        listed = sorted([*applied, *_failed(rows)], key=lambda m: m.name, reverse=True)
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
        undo = self._undo_list(target, rows)
        database = self._database_name()
        steps = [
            f"Back up database {database} with pg_dump -Fc into {self.settings.backup_dir}.",
            "In one transaction, newest first, run down.sql of: "
            + ", ".join(u.migration.name for u in undo)
            + "; mark them rolled back in _prisma_migrations. Any error undoes all of it.",
        ]
        return Plan(steps=steps, warnings=self._warnings(target, rows, undo))

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Back up, then undo the later migrations in one transaction."""
        started = time.monotonic()
        rows = await self._migrations()
        undo = self._undo_list(target, rows)
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

    async def describe_state(self) -> str:
        """Say which migration the database is at, and any failed one, asked from it."""
        rows = await self._migrations()
        applied = _applied(rows)
        database = self._database_name()
        text = (
            f"database {database} is at migration {applied[0].name}"
            if applied
            else f"database {database} has no applied migration"
        )
        failed = "; ".join(m.failure() for m in _failed(rows))
        return f"{text}; {failed}" if failed else text

    async def aclose(self) -> None:
        """Nothing to release: every operation opens and closes its own connection."""

    # -- backups and restore (the `restore database` and `backups database` commands) ------

    async def backups(self) -> list[Backup]:
        """Return this database's backups, newest first."""
        return await self._backups.listed(self._database_name())

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

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[asyncpg.Connection]:
        """Open one connection with server-side timeouts; errors become provider errors."""
        target = self._target()
        settings = self.settings
        try:
            conn = await asyncpg.connect(
                target.dsn,
                timeout=settings.connect_timeout_seconds,
                command_timeout=settings.statement_timeout_seconds + 5,
                # Timeouts and the schema go into each transaction (_limits): poolers
                # refuse them as startup settings. application_name they pass on.
                server_settings={"application_name": "rollbot"},
                # A transaction-mode pooler may run each statement on another server
                # connection, where a named prepared statement does not exist.
                statement_cache_size=0 if target.pooled else 100,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _connect_error(exc, target) from exc
        try:
            yield conn
        finally:
            try:
                await asyncio.wait_for(conn.close(), settings.connect_timeout_seconds)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    async def _limits(self, conn: asyncpg.Connection, target: Target) -> None:
        """Set this transaction's timeouts and schema (SET LOCAL: nothing outlives it)."""
        settings = self.settings
        await conn.execute(
            "SELECT set_config('statement_timeout', $1, true), "
            "set_config('lock_timeout', $2, true), set_config('search_path', $3, true)",
            f"{int(settings.statement_timeout_seconds * 1000)}ms",
            f"{int(settings.lock_timeout_seconds * 1000)}ms",
            _quote_ident(target.schema),
        )

    async def _read_migrations(self) -> list[Migration]:
        target = self._target()
        async with self._connect() as conn:
            try:
                async with conn.transaction(readonly=True):
                    await self._limits(conn, target)
                    records = await conn.fetch(MIGRATIONS_QUERY)
            except asyncpg.UndefinedTableError as exc:
                raise NotFound(
                    f"Database {target.database} has no _prisma_migrations table: Prisma has "
                    "never migrated it."
                ) from exc
            except asyncpg.PostgresError as exc:
                raise Refused(
                    f"Reading _prisma_migrations of {target.database} failed: "
                    f"{_error_text(exc, target)}"
                ) from exc
            except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
                raise Transient(
                    f"Reading _prisma_migrations of {target.database} failed: "
                    f"{_error_text(exc, target)}"
                ) from exc
        return [
            Migration(
                id=str(r["id"]),
                name=str(r["migration_name"]),
                checksum=str(r["checksum"]),
                started_at=r["started_at"],
                finished_at=r["finished_at"],
                rolled_back_at=r["rolled_back_at"],
                logs=r["logs"],
            )
            for r in records
        ]

    async def _migrations(self) -> list[Migration]:
        """Read `_prisma_migrations` (a read: retried)."""
        return await retrying(self._read_migrations, deadline_seconds=30)

    def _database_name(self) -> str:
        return self._target().database

    async def _state_or_unknown(self) -> str:
        """Describe the state for an error message without raising a second error."""
        return await state_or_unknown(self.describe_state)

    # -- what to undo -----------------------------------------------------------------------

    def _undo_list(self, target: str, rows: Sequence[Migration]) -> list[Undo]:
        """Return the applied migrations after `target`, newest first, each with its down.sql.

        Refuses, naming every one, when any of them has no usable down.sql.
        """
        applied = _applied(rows)
        names = [m.name for m in applied]
        if target not in names:
            failed = next((m for m in _failed(rows) if m.name == target), None)
            if failed is not None:
                raise Refused(f"`{target}` is a {failed.failure()}; pick an applied migration.")
            shown = ", ".join(names[:10]) or "none"
            raise NotFound(f"No applied migration `{target}`. Applied, newest first: {shown}.")
        later = applied[: names.index(target)]
        if not later:
            raise Refused(f"The database is already at migration {target}.")
        downs = {m.name: self._down_sql(m.name) for m in later}
        missing = [f"{name} ({problem})" for name, (_, problem) in downs.items() if problem]
        if missing:
            raise Refused(
                "Cannot roll back: these later migrations have no usable down.sql in "
                f"{self.settings.migrations_dir}: {', '.join(missing)}. Nothing was changed."
            )
        return [Undo(m, downs[m.name][0]) for m in later]

    def _down_sql(self, name: str) -> tuple[str, str | None]:
        """Return a migration's down.sql and None, or '' and why it cannot be used."""
        folder = self.settings.migrations_dir / name
        try:
            text = (folder / "down.sql").read_text(encoding="utf-8")
        except FileNotFoundError:
            return "", "no down.sql" if folder.is_dir() else "no migration folder"
        except (OSError, UnicodeDecodeError) as exc:
            return "", f"unreadable down.sql: {type(exc).__name__}"
        return (text, None) if text.strip() else ("", "empty down.sql")

    def _warnings(self, target: str, rows: Sequence[Migration], undo: Sequence[Undo]) -> list[str]:
        warnings = [
            "Data in the columns and tables these down.sql files drop is lost; the backup "
            "keeps it (restore database brings it back)."
        ]
        for u in undo:
            changed = self._checksum_differs(u.migration)
            if changed:
                warnings.append(changed)
        warnings += [
            f"{m.failure()}: it is left as it is (its changes may be partial). `prisma migrate "
            "deploy` stops with P3009 until it is resolved: undo what it did by hand (or "
            f"restore a backup), then `prisma migrate resolve --rolled-back {m.name}`."
            for m in _failed(rows)
            if m.name > target
        ]
        return warnings

    def _checksum_differs(self, migration: Migration) -> str | None:
        path = self.settings.migrations_dir / migration.name / "migration.sql"
        try:
            script = path.read_bytes()
        except OSError:
            return f"{migration.name}/migration.sql is missing: down.sql cannot be checked."
        if not prisma_checksum_matches(script, migration.checksum):
            return (
                f"{migration.name}/migration.sql differs from what was applied (checksum): its "
                "down.sql may not match the database."
            )
        return None

    # -- the mutation -----------------------------------------------------------------------

    async def _run_down(
        self, undo: Sequence[Undo], current: str, backup: Backup, progress: Progress
    ) -> None:
        """Run every down.sql and mark its row, in one transaction; never retried."""
        target = self._target()
        where = self.settings.backup_dir / backup.name
        unchanged = f"the database is unchanged (still at migration {current}); backup: {where}"
        try:
            async with self._connect() as conn:
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
            await self._limits(conn, target)
            await self._take_prisma_lock(conn, unchanged)
            await self._check_still_applied(conn, undo, unchanged)
            for u in undo:
                await self._undo_one(conn, u, target, unchanged)
                await say(progress, f"Ran down.sql of {u.migration.name} (not committed yet).")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await _rollback_quietly(conn)
            raise RollbackFailed(
                f"Preparing the rollback failed: {_error_text(exc, target)}. The transaction was "
                f"rolled back: {unchanged}.",
                target_state=unchanged,
            ) from exc
        except BaseException:
            await _rollback_quietly(conn)
            raise

    async def _commit(self, conn: asyncpg.Connection, target: Target, where: Path) -> None:
        try:
            await conn.execute("COMMIT")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise RollbackFailed(
                f"COMMIT failed: {_error_text(exc, target)}. Whether the migrations were rolled "
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
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise RollbackFailed(
                f"down.sql of migration {name} failed: {_error_text(exc, target)}. The "
                f"transaction was rolled back: {unchanged}.",
                target_state=unchanged,
            ) from exc


def prisma_checksum_matches(script: bytes, checksum: str) -> bool:
    """Compare a migration.sql with its recorded checksum the way Prisma's engine does.

    SHA-256 of the file as it is, with CRLF turned into LF, or with LF turned into CRLF
    (git may have changed the line endings since it was applied); a recorded checksum
    that is not 64 characters long is in the old format, whose bytes were not zero-padded.
    A trailing newline added or removed is a change, to Prisma as here.
    """
    variants = (script, script.replace(b"\r\n", b"\n"), script.replace(b"\n", b"\r\n"))
    for variant in variants:
        digest = hashlib.sha256(variant).digest()
        if checksum and len(checksum) != CHECKSUM_LENGTH:
            rendered = "".join(f"{byte:x}" for byte in digest)
        else:
            rendered = digest.hex()
        if rendered == checksum:
            return True
    return False


def _applied(rows: Sequence[Migration]) -> list[Migration]:
    """Return applied migrations newest first (by their timestamped names, as Prisma orders)."""
    return sorted((m for m in rows if m.applied), key=lambda m: m.name, reverse=True)


def _failed(rows: Sequence[Migration]) -> list[Migration]:
    applied = {m.name for m in rows if m.applied}
    return [m for m in rows if m.failed and m.name not in applied]


def _quote_ident(name: str) -> str:
    """Quote an identifier as PostgreSQL does (a search path of one schema)."""
    return '"' + name.replace('"', '""') + '"'


def _error_text(exc: BaseException, target: Target) -> str:
    """Return the database's words for an error, without the password."""
    if isinstance(exc, asyncpg.PostgresError):
        detail = getattr(exc, "detail", None)
        text = f"{exc.sqlstate}: {exc}" + (f" ({detail})" if detail else "")
    elif isinstance(exc, TimeoutError):
        text = "no answer before the timeout"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return target.redact(text)[:MAX_ERROR_TEXT]


def _connect_error(exc: BaseException, target: Target) -> ProviderError:
    what = f"Connecting to database {target.database}"
    text = _error_text(exc, target)
    if isinstance(
        exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
    ):
        return AuthRejected(f"{what}: the database refused the credentials ({text})")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return NotFound(f"{what} failed: {text}")
    if isinstance(exc, TimeoutError):
        return TimedOut(f"{what} failed: {text}")
    return Transient(f"{what} failed: {text}")


async def _rollback_quietly(conn: asyncpg.Connection) -> None:
    """Roll back; if the connection is gone, the server has rolled back already."""
    with contextlib.suppress(OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        await conn.execute("ROLLBACK")
