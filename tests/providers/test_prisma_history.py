"""After a rollback, `_prisma_migrations` is as Prisma's tools expect; backups are kept right."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from providers.base import running_for
from tests.support.migrations import (
    ADD_POSTS,
    ADD_ROLE,
    INIT,
    PrismaProject,
    ProviderFactory,
    backup_files,
)
from tests.support.prisma_engine import PrismaError, migrate_deploy, resolve_rolled_back, rows
from tests.support.progress import Recorder

TAGS = "20240401000000_add_tags"


async def test_a_rollback_changes_only_rolled_back_at_of_the_undone_rows(
    prisma_db: PrismaProject, make_provider: ProviderFactory
) -> None:
    before = await rows(prisma_db)

    await make_provider(prisma_db).rollback(INIT, Recorder())

    after = await rows(prisma_db)
    assert after.keys() == before.keys()  # no row added or removed
    for row_id, old in before.items():
        new = after[row_id]
        if old.migration_name in (ADD_ROLE, ADD_POSTS):
            # Exactly what `prisma migrate resolve --rolled-back` writes: the time, nothing else.
            assert new.rolled_back_at is not None
            assert dataclasses.replace(new, rolled_back_at=None) == old
        else:
            assert new == old


async def test_the_next_deploy_of_the_fixed_release_reapplies_what_was_rolled_back(
    prisma_db: PrismaProject, make_provider: ProviderFactory
) -> None:
    provider = make_provider(prisma_db)
    await provider.rollback(ADD_ROLE, Recorder())
    # The fixed release ships a corrected add_posts under the same name.
    prisma_db.write(
        ADD_POSTS,
        "CREATE TABLE posts (id SERIAL PRIMARY KEY, user_id INTEGER NOT NULL "
        "REFERENCES users (id), title TEXT NOT NULL, draft BOOLEAN NOT NULL DEFAULT true);",
        "DROP TABLE posts;",
    )

    assert await migrate_deploy(prisma_db) == [ADD_POSTS]

    assert "draft" in await prisma_db.columns("posts")
    assert await provider.current_version() == ADD_POSTS
    versions = [v.name for v in await provider.list_versions()]
    assert versions == [ADD_POSTS, ADD_ROLE, INIT]  # the rolled-back attempt is not listed
    plan = await provider.plan(ADD_ROLE)
    assert not [w for w in plan.warnings if "checksum" in w]  # compared with the new row
    # And the fixed release can be rolled back in its turn.
    await provider.rollback(ADD_ROLE, Recorder())
    assert await prisma_db.tables() == {"users", "_prisma_migrations"}
    names = [r.migration_name for r in (await rows(prisma_db)).values() if r.rolled_back_at]
    assert sorted(names) == [ADD_POSTS, ADD_POSTS]


async def test_a_failed_later_migration_is_left_for_prisma_migrate_resolve_and_the_plan_says_so(
    prisma_db: PrismaProject, make_provider: ProviderFactory
) -> None:
    prisma_db.write(TAGS, "CREATE TABLE tags (id SERIAL PRIMARY KEY);", "DROP TABLE tags;")
    await prisma_db.record_failed(TAGS, 'Database error: relation "tags" already exists')
    provider = make_provider(prisma_db)

    plan = await provider.plan(ADD_ROLE)
    await provider.rollback(ADD_ROLE, Recorder())

    (warning,) = [w for w in plan.warnings if TAGS in w]
    assert "P3009" in warning and f"prisma migrate resolve --rolled-back {TAGS}" in warning
    # What the warning says is what Prisma does: deploy stops until the failure is resolved...
    with pytest.raises(PrismaError) as stopped:
        await migrate_deploy(prisma_db)
    assert stopped.value.code == "P3009"
    # ...and a rolled-back migration is not a failed one Prisma would let resolve mark.
    with pytest.raises(PrismaError) as refused:
        await resolve_rolled_back(prisma_db, ADD_POSTS)
    assert refused.value.code == "P3012"
    await resolve_rolled_back(prisma_db, TAGS)
    assert await migrate_deploy(prisma_db) == [ADD_POSTS, TAGS]
    assert await provider.current_version() == TAGS


async def test_the_backup_is_named_after_the_rollback_that_took_it(
    prisma_db: PrismaProject, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    provider = make_provider(prisma_db)
    progress = Recorder()

    with running_for("rb-1a2b3c4d"):
        outcome = await provider.rollback(INIT, progress)

    (name,) = backup_files(tmp_path)
    assert name.endswith("_pre-rollback_rb-1a2b3c4d.dump")
    (backup,) = await provider.backups()
    assert (backup.name, backup.rollback, backup.kind) == (name, "rb-1a2b3c4d", "pre-rollback")
    assert "taken by rb-1a2b3c4d" in outcome.notes[0]
    assert f"Backup written: {name} (" in progress.text
    assert f"in {tmp_path / 'backups'}" in progress.text


async def test_a_restore_never_prunes_the_backup_it_restores(
    prisma_db: PrismaProject, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    provider = make_provider(prisma_db, keep_backups=1)
    await provider.rollback(INIT, Recorder())
    (pre_rollback,) = backup_files(tmp_path)

    outcome = await provider.restore(None, Recorder())

    assert outcome.summary.startswith(f"Restored {pre_rollback}")
    assert await prisma_db.tables() == {"users", "posts", "_prisma_migrations"}
    # The restored backup was kept while it was read; pruning comes back to it next time.
    assert pre_rollback in backup_files(tmp_path)
