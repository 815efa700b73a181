"""What Prisma's schema engine does with `_prisma_migrations`, for checking rollbot leaves it right.

Prisma's CLI needs engine binaries from binaries.prisma.sh, which this machine cannot
reach, so the two commands a team runs after a rollback are reproduced here from the
engine's source (prisma/prisma-engines, schema-engine/core/src/commands):

- ``prisma migrate deploy`` (apply_migrations.rs): refuses with P3009 while any row has
  neither ``finished_at`` nor ``rolled_back_at`` (a failed migration); otherwise applies,
  in folder order, every migration folder that has no row with ``rolled_back_at`` null,
  recording each as a new row (started, script run, one step, finished).
- ``prisma migrate resolve --rolled-back NAME`` (mark_migration_rolled_back.rs): only a
  failed migration may be marked (P3012 otherwise); it sets ``rolled_back_at = now()`` on
  each failed row of that name and changes nothing else.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import asyncpg

from tests.support.migrations import PrismaProject


class PrismaError(Exception):
    """What the Prisma CLI would print and exit non-zero with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Row:
    """One `_prisma_migrations` row, every column."""

    id: str
    checksum: str
    finished_at: object
    migration_name: str
    logs: str | None
    rolled_back_at: object
    started_at: object
    applied_steps_count: int


async def rows(project: PrismaProject) -> dict[str, Row]:
    """Every row of `_prisma_migrations` by id."""
    found = await project.sql("SELECT * FROM _prisma_migrations")
    return {r["id"]: Row(**dict(r)) for r in found}


async def migrate_deploy(project: PrismaProject) -> list[str]:
    """Apply pending migrations as `prisma migrate deploy` does; return their names."""
    existing = list((await rows(project)).values())
    failed = [
        r.migration_name for r in existing if r.finished_at is None and r.rolled_back_at is None
    ]
    if failed:
        raise PrismaError("P3009", f"migrate found failed migrations: {', '.join(failed)}")
    done = {r.migration_name for r in existing if r.rolled_back_at is None}
    folders = sorted(p.name for p in project.migrations_dir.iterdir() if p.is_dir())
    applied = []
    for name in folders:
        if name in done:
            continue
        script = (project.migrations_dir / name / "migration.sql").read_text()
        row_id = str(uuid.uuid4())
        await project.sql(
            "INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at) "
            "VALUES ($1, $2, $3, now())",
            row_id,
            hashlib.sha256(script.encode()).hexdigest(),
            name,
        )
        try:
            await project.execute(script)
        except asyncpg.PostgresError as exc:
            await project.sql(
                "UPDATE _prisma_migrations SET logs = $2 WHERE id = $1", row_id, str(exc)
            )
            raise PrismaError("P3018", f"migration {name} failed to apply: {exc}") from exc
        await project.sql(
            "UPDATE _prisma_migrations SET applied_steps_count = applied_steps_count + 1, "
            "finished_at = now() WHERE id = $1",
            row_id,
        )
        applied.append(name)
    return applied


async def resolve_rolled_back(project: PrismaProject, name: str) -> None:
    """Mark a failed migration rolled back as `prisma migrate resolve --rolled-back` does."""
    failed = [
        r
        for r in (await rows(project)).values()
        if r.migration_name == name and r.finished_at is None and r.rolled_back_at is None
    ]
    if not failed:
        raise PrismaError(
            "P3012",
            f"Migration `{name}` cannot be rolled back because it is not in a failed state.",
        )
    for row in failed:
        await project.sql(
            "UPDATE _prisma_migrations SET rolled_back_at = now() WHERE id = $1", row.id
        )
