"""Which applied Prisma migrations a rollback undoes, with their down.sql read and checked first.

Prisma writes no down migrations: teams keep a ``down.sql`` beside each ``migration.sql``
in ``<migrations_dir>/<timestamp>_<name>/`` (Prisma's "generating down migrations" guide).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from providers.base import NotFound, Refused
from providers.prisma_history import (
    Migration,
    applied_migrations,
    failed_migrations,
    prisma_checksum_matches,
)


@dataclass(frozen=True)
class Undo:
    """A later migration to undo, with the down.sql read before anything changed."""

    migration: Migration
    down_sql: str


def undo_list(target: str, rows: Sequence[Migration], migrations_dir: Path) -> list[Undo]:
    """Return the applied migrations after `target`, newest first, each with its down.sql.

    Refuses, naming every one, when any of them has no usable down.sql.
    """
    later = later_than(target, rows)
    downs = {m.name: read_down_sql(migrations_dir / m.name) for m in later}
    missing = [f"{name} ({problem})" for name, (_, problem) in downs.items() if problem]
    if missing:
        raise Refused(
            "Cannot roll back: these later migrations have no usable down.sql in "
            f"{migrations_dir}: {', '.join(missing)}. Nothing was changed."
        )
    return [Undo(m, downs[m.name][0]) for m in later]


def later_than(target: str, rows: Sequence[Migration]) -> list[Migration]:
    """Return the applied migrations after `target`, newest first; refuse a target not applied."""
    applied = applied_migrations(rows)
    names = [m.name for m in applied]
    if target not in names:
        failed = next((m for m in failed_migrations(rows) if m.name == target), None)
        if failed is not None:
            raise Refused(f"`{target}` is a {failed.failure()}; pick an applied migration.")
        shown = ", ".join(names[:10]) or "none"
        raise NotFound(f"No applied migration `{target}`. Applied, newest first: {shown}.")
    later = applied[: names.index(target)]
    if not later:
        raise Refused(f"The database is already at migration {target}.")
    return later


def undo_warnings(
    target: str, rows: Sequence[Migration], undo: Sequence[Undo], migrations_dir: Path
) -> list[str]:
    """Say what undoing loses, which migration.sql changed since, and which failure stays."""
    warnings = [
        "Data in the columns and tables these down.sql files drop is lost; the backup "
        "keeps it (restore database brings it back)."
    ]
    for u in undo:
        changed = checksum_differs(u.migration, migrations_dir)
        if changed:
            warnings.append(changed)
    warnings += [
        f"{m.failure()}: it is left as it is (its changes may be partial). `prisma migrate "
        "deploy` stops with P3009 until it is resolved: undo what it did by hand (or "
        f"restore a backup), then `prisma migrate resolve --rolled-back {m.name}`."
        for m in failed_migrations(rows)
        if m.name > target
    ]
    return warnings


def read_down_sql(folder: Path) -> tuple[str, str | None]:
    """Return a migration's down.sql and None, or '' and why it cannot be used."""
    try:
        text = (folder / "down.sql").read_text(encoding="utf-8")
    except FileNotFoundError:
        return "", "no down.sql" if folder.is_dir() else "no migration folder"
    except (OSError, UnicodeDecodeError) as exc:
        return "", f"unreadable down.sql: {type(exc).__name__}"
    return (text, None) if text.strip() else ("", "empty down.sql")


def checksum_differs(migration: Migration, migrations_dir: Path) -> str | None:
    """Say when a migration.sql is missing or differs from what was applied; else None."""
    path = migrations_dir / migration.name / "migration.sql"
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
