"""Prisma's `_prisma_migrations` table: its rows, how Prisma orders them and checks checksums.

One row per attempt: ``id, checksum, finished_at, migration_name, logs, rolled_back_at,
started_at, applied_steps_count``. An applied migration has ``finished_at`` set and
``rolled_back_at`` null; a failed one was started and neither finished nor rolled back.
``checksum`` is the hex SHA-256 of migration.sql.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from providers.base import NotFound, Refused, Transient
from providers.pg_backups import when
from providers.pg_connections import connect, error_text, set_limits
from providers.pg_urls import Target

if TYPE_CHECKING:
    from providers.postgres_migrations import PostgresMigrationsSettings

CHECKSUM_LENGTH = 64  # a zero-padded SHA-256, as Prisma writes checksums now

MIGRATIONS_QUERY = """
SELECT id, migration_name, checksum, started_at, finished_at, rolled_back_at, logs
FROM _prisma_migrations
ORDER BY migration_name, started_at
"""


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


async def read_migrations(target: Target, settings: PostgresMigrationsSettings) -> list[Migration]:
    """Read every row of `_prisma_migrations` in a read-only transaction."""
    async with connect(target, settings) as conn:
        try:
            async with conn.transaction(readonly=True):
                await set_limits(conn, target, settings)
                records = await conn.fetch(MIGRATIONS_QUERY)
        except asyncpg.UndefinedTableError as exc:
            raise NotFound(
                f"Database {target.database} has no _prisma_migrations table: Prisma has "
                "never migrated it."
            ) from exc
        except asyncpg.PostgresError as exc:
            raise Refused(
                f"Reading _prisma_migrations of {target.database} failed: {error_text(exc, target)}"
            ) from exc
        except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
            raise Transient(
                f"Reading _prisma_migrations of {target.database} failed: {error_text(exc, target)}"
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


def applied_migrations(rows: Sequence[Migration]) -> list[Migration]:
    """Return applied migrations newest first (by their timestamped names, as Prisma orders)."""
    return sorted((m for m in rows if m.applied), key=lambda m: m.name, reverse=True)


def failed_migrations(rows: Sequence[Migration]) -> list[Migration]:
    """Return the failed attempts of migrations that no later attempt applied."""
    applied = {m.name for m in rows if m.applied}
    return [m for m in rows if m.failed and m.name not in applied]


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
