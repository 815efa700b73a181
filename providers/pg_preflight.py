"""Preflight of a migrations rollback: which migrations, whether they can be undone, what is lost.

Checks (reads only; nothing is written to the database or the backup folder):

- ``down-migrations``: every applied migration after the target has a non-empty down.sql
  (fail naming each one that has not).
- ``backup-writable``: ``backup_dir`` exists and takes a file (a probe written and removed at
  once) or can be made; pg_dump and pg_restore are there; pg_dump is not older than the
  server (pg_dump refuses a newer server). Fail otherwise.
- ``checksums``: each migration.sql undone is the one that was applied (warn otherwise: its
  down.sql may not fit the database).
- ``failed-migrations``: a failed migration stays failed (warn: P3009).
- ``prisma-lock``: ``prisma migrate`` holds its advisory lock now (warn: the rollback would
  stop, changing nothing).

What a down.sql drops is read from its text (DROP TABLE, ALTER TABLE … DROP COLUMN, TRUNCATE,
DELETE FROM, and the objects that hold no data), comments left out.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from providers.base import ProviderError, Refused, Transient
from providers.capabilities import Identity, PreflightCheck, PreflightReport, Verdict
from providers.pg_backups import PgBackups
from providers.pg_connections import DATABASE_ERRORS, connect, error_text, set_limits
from providers.pg_urls import Target
from providers.prisma_history import Migration, applied_migrations, failed_migrations
from providers.prisma_undo import checksum_differs, later_than, read_down_sql
from providers.retry import retrying

if TYPE_CHECKING:
    from providers.postgres_migrations import PostgresMigrationsSettings

# Prisma's own migration lock: holding it keeps `prisma migrate` out while a rollback runs.
PRISMA_LOCK = 72707369
FACTS_QUERY = """
SELECT current_setting('server_version_num')::int / 10000 AS major,
       EXISTS (
           SELECT 1 FROM pg_locks
           WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = $1
             AND objsubid = 1
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
       ) AS prisma_lock
"""
COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
NAME = rf"{IDENT}(?:\s*\.\s*{IDENT})*"
NAMES = rf"{NAME}(?:\s*,\s*{NAME})*"
DROP = re.compile(
    r"\bDROP\s+(TABLE|MATERIALIZED\s+VIEW|VIEW|INDEX|SEQUENCE|TYPE|SCHEMA)\s+"
    rf"(?:CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?({NAMES})",
    re.IGNORECASE,
)
ALTER = re.compile(
    rf"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?({NAME})\s+([^;]*)", re.IGNORECASE
)
# In an ALTER TABLE: DROP [COLUMN] name, but not DROP CONSTRAINT / DEFAULT / NOT NULL / ….
DROP_COLUMN = re.compile(
    r"\bDROP\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?"
    rf"(?!(?:CONSTRAINT|DEFAULT|NOT|IDENTITY|EXPRESSION)\b)({IDENT})",
    re.IGNORECASE,
)
TRUNCATE = re.compile(rf"\bTRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?({NAMES})", re.IGNORECASE)
DELETE = re.compile(rf"\bDELETE\s+FROM\s+(?:ONLY\s+)?({NAME})", re.IGNORECASE)
# Dropping these loses rows; the other objects are made again from the migration.
DATA_KINDS = frozenset({"table", "column", "schema"})


@dataclass(frozen=True)
class ServerFacts:
    """What the database server says about itself for the preflight."""

    major: int
    prisma_lock: bool


def migration_identity(migration: Migration) -> Identity:
    """A migration by name, and exactly: the start of the checksum of what was applied."""
    return Identity(
        migration.name, f"migration {migration.name} (checksum {migration.checksum[:12]})"
    )


async def preflight_report(
    target: str,
    rows: Sequence[Migration],
    settings: PostgresMigrationsSettings,
    database: Target,
    backups: PgBackups,
) -> PreflightReport:
    """Check that the later migrations can be undone after a backup; say what each drops."""
    later = later_than(target, rows)  # raises for a version that is not an applied one
    folder = settings.migrations_dir
    downs = {m.name: read_down_sql(folder / m.name) for m in later}
    facts: ServerFacts | str
    try:
        facts = await retrying(lambda: server_facts(database, settings), deadline_seconds=30)
    except ProviderError as exc:
        facts = database.redact(exc.message)
    applied = applied_migrations(rows)
    return PreflightReport(
        current=migration_identity(applied[0]),
        target=migration_identity(next(m for m in applied if m.name == target)),
        checks=[
            down_check(downs),
            await backup_check(settings, backups, facts),
            checksum_check(later, folder),
            failed_check(rows),
            lock_check(facts),
        ],
        changes=[
            "migrations undone: "
            + ", ".join(f"{name} ({undone(*down)})" for name, down in downs.items())
        ],
    )


async def server_facts(database: Target, settings: PostgresMigrationsSettings) -> ServerFacts:
    """Read the server's major version and whether Prisma's lock is held, read-only."""
    async with connect(database, settings) as conn:
        try:
            async with conn.transaction(readonly=True):
                await set_limits(conn, database, settings)
                row = await conn.fetchrow(FACTS_QUERY, PRISMA_LOCK)
        except asyncpg.PostgresError as exc:
            raise Refused(f"reading pg_locks failed: {error_text(exc, database)}") from exc
        except DATABASE_ERRORS as exc:
            raise Transient(f"reading pg_locks failed: {error_text(exc, database)}") from exc
    if row is None:  # pragma: no cover - one row always comes back
        raise Refused("reading pg_locks returned nothing")
    return ServerFacts(int(row["major"]), bool(row["prisma_lock"]))


def down_check(downs: dict[str, tuple[str, str | None]]) -> PreflightCheck:
    """Every migration undone has a usable down.sql."""
    missing = [f"{name} ({problem})" for name, (_, problem) in downs.items() if problem]
    if missing:
        return PreflightCheck(
            "down-migrations", Verdict.FAIL, f"no usable down.sql: {', '.join(missing)}"
        )
    return PreflightCheck(
        "down-migrations",
        Verdict.PASS,
        f"every migration undone has a down.sql: {', '.join(downs)}",
    )


async def backup_check(
    settings: PostgresMigrationsSettings, backups: PgBackups, facts: ServerFacts | str
) -> PreflightCheck:
    """The backup folder takes a dump, and pg_dump can dump this server."""
    name = "backup-writable"
    folder, problem = await asyncio.to_thread(folder_state, settings.backup_dir)
    if problem is not None:
        return PreflightCheck(name, Verdict.FAIL, problem)
    try:
        dump, _ = backups.binary("pg_dump"), backups.binary("pg_restore")
    except ProviderError as exc:
        return PreflightCheck(name, Verdict.FAIL, exc.message)
    major, why = await tool_major(dump, settings.connect_timeout_seconds)
    if major is None:
        return PreflightCheck(name, Verdict.FAIL, f"pg_dump --version failed: {why}")
    if isinstance(facts, str):
        server = f"the server's version is unknown ({facts})"
    elif major < facts.major:
        return PreflightCheck(
            name,
            Verdict.FAIL,
            f"pg_dump {major} is older than the server ({facts.major}): it refuses to dump it",
        )
    else:
        server = f"the server is {facts.major}"
    return PreflightCheck(
        name, Verdict.PASS, f"{folder}; pg_dump {major} and pg_restore found; {server}"
    )


def checksum_check(later: Sequence[Migration], folder: Path) -> PreflightCheck:
    """Each migration.sql undone is the one that was applied."""
    changed = [c.rstrip(".") for c in (checksum_differs(m, folder) for m in later) if c]
    if changed:
        return PreflightCheck("checksums", Verdict.WARN, "; ".join(changed))
    return PreflightCheck(
        "checksums", Verdict.PASS, "every migration undone has the migration.sql that was applied"
    )


def failed_check(rows: Sequence[Migration]) -> PreflightCheck:
    """A failed migration stays failed, and blocks `prisma migrate deploy`."""
    failed = [
        f"{m.failure()}, left as it is: prisma migrate deploy stops with P3009 until it is "
        f"resolved (prisma migrate resolve --rolled-back {m.name})"
        for m in failed_migrations(rows)
    ]
    if failed:
        return PreflightCheck("failed-migrations", Verdict.WARN, "; ".join(failed))
    return PreflightCheck("failed-migrations", Verdict.PASS, "no failed migration")


def lock_check(facts: ServerFacts | str) -> PreflightCheck:
    """Nobody runs `prisma migrate` now."""
    name = "prisma-lock"
    if isinstance(facts, str):
        return PreflightCheck(name, Verdict.WARN, f"could not read the locks: {facts}")
    if facts.prisma_lock:
        return PreflightCheck(
            name,
            Verdict.WARN,
            "prisma migrate holds its lock on the database now (a deploy is in progress): "
            "the rollback stops, changing nothing, while it does",
        )
    return PreflightCheck(
        name, Verdict.PASS, "no prisma migrate holds its lock on the database now"
    )


def folder_state(folder: Path) -> tuple[str, str | None]:
    """Say whether a backup can be written to `folder`: (what it is, or the problem)."""
    if folder.exists():
        if not folder.is_dir():
            return "", f"{folder} is not a folder"
        try:
            handle, probe = tempfile.mkstemp(prefix=".rollbot-probe-", dir=folder)
            os.close(handle)
            os.unlink(probe)
        except OSError as exc:
            return "", f"{folder} is not writable: {exc.strerror}"
        return f"{folder} is writable", None
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return "", f"{folder} cannot be made: {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return "", f"{folder} cannot be made: {parent} is not writable"
    return f"{folder} can be made and written", None


async def tool_major(binary: Path, seconds: float) -> tuple[int | None, str]:
    """Return the major version a PostgreSQL tool says it is, or None and why not."""
    try:
        process = await asyncio.create_subprocess_exec(
            str(binary),
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        return None, f"it could not start: {exc.strerror}"
    try:
        out, _ = await asyncio.wait_for(process.communicate(), seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None, f"no answer within {seconds:g} s"
    found = re.search(r"\)\s*(\d+)", out.decode(errors="replace"))
    if process.returncode != 0 or found is None:
        return None, f"it said {out.decode(errors='replace').strip()[:80]!r}"
    return int(found[1]), ""


def undone(down_sql: str, problem: str | None) -> str:
    """Say what undoing one migration drops, and whether data is lost."""
    if problem is not None:
        return f"{problem}: cannot be undone"
    drops, data = down_sql_drops(down_sql)
    if not drops:
        return "no DROP TABLE/COLUMN found: no data dropped, backup taken"
    verdict = "data lost" if data else "no data dropped"
    return f"{', '.join(drops)}: {verdict}, backup taken"


def down_sql_drops(sql: str) -> tuple[list[str], bool]:
    """Return what a down.sql drops, in file order, and whether any of it holds data."""
    text = COMMENTS.sub(" ", sql)
    found: list[tuple[int, str, str]] = []
    for match in DROP.finditer(text):
        kind = " ".join(match[1].lower().split())
        found += [(match.start(), kind, name) for name in names_in(match[2])]
    for match in ALTER.finditer(text):
        table = plain(match[1])
        found += [
            (match.start(2) + column.start(), "column", f"{table}.{plain(column[1])}")
            for column in DROP_COLUMN.finditer(match[2])
        ]
    for match in TRUNCATE.finditer(text):
        found += [(match.start(), "truncate", name) for name in names_in(match[1])]
    found += [(m.start(), "delete", plain(m[1])) for m in DELETE.finditer(text)]
    found.sort()
    said = [said_drop(kind, name) for _, kind, name in found]
    data = any(kind in DATA_KINDS | {"truncate", "delete"} for _, kind, _ in found)
    return said, data


def said_drop(kind: str, name: str) -> str:
    """Say one thing a down.sql removes."""
    if kind == "truncate":
        return f"empties table {name}"
    if kind == "delete":
        return f"deletes rows of {name}"
    return f"drops {kind} {name}"


def names_in(text: str) -> list[str]:
    """Split a list of (qualified, maybe quoted) names."""
    return [plain(m[0]) for m in re.finditer(NAME, text)]


def plain(name: str) -> str:
    """A (qualified) name without its quotes."""
    parts = re.findall(IDENT, name)
    return ".".join(p[1:-1].replace('""', '"') if p.startswith('"') else p for p in parts)
