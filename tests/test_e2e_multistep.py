"""End to end: a three-step plan (containers, migrations, sessions) whose middle step fails."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from bot.models import State, StepStatus
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    OUTSIDER,
    REQUESTER,
    backend_config,
    card_fields,
    cards,
    confirm,
    ephemeral_text,
    has_action,
    ready_to_approve,
    request_card,
    running_image,
    service_config,
    thread_text,
    wait_card,
)
from tests.support.bot import RunningBot, StartBot
from tests.support.docker import ComposeContainer, ComposeContainerFactory, unique_project
from tests.support.gitrepos import GitRemote
from tests.support.migrations import ADD_POSTS, ADD_ROLE, INIT, PrismaProject
from tests.support.services import HttpServerFactory
from tests.support.slack import text_of

SESSIONS = 25


@pytest.fixture
async def sessions(redis_url: str) -> AsyncIterator[tuple[redis.asyncio.Redis, str]]:
    """A Redis client and a key prefix of this test's own, with its session keys set."""
    client = redis.asyncio.Redis.from_url(redis_url)
    prefix = f"session:{secrets.token_hex(4)}"
    for i in range(SESSIONS):
        await client.set(f"{prefix}:{i}", f"user-{i}", px=600_000)
    yield client, prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def plan_config(
    container: ComposeContainer, project: PrismaProject, prefix: str, folder: Path
) -> dict[str, Any]:
    """backend: the compose rollback, then migrations down to INIT, then clear the sessions."""
    config = backend_config(container.project, container.port)
    production = config["services"]["backend"]["environments"]["production"]
    production["steps"] = [
        {
            "name": "database",
            "provider": {
                "provider": "postgres_migrations",
                "migrations_dir": str(project.migrations_dir),
                "backup_dir": str(folder / "pg"),
            },
            "targets": {"v1.2.3": INIT},
        },
        {
            "name": "sessions",
            "provider": {
                "provider": "redis_state",
                "pattern": f"{prefix}:*",
                "backup_dir": str(folder / "redis"),
            },
        },
    ]
    return config


async def start(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    project: PrismaProject,
    prefix: str,
    redis_url: str,
    folder: Path,
) -> tuple[ComposeContainer, RunningBot]:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config = plan_config(container, project, prefix, folder)
    env = {"DATABASE_URL": project.dsn, "REDIS_URL": redis_url}
    return container, await start_rollbot(config, extra_env=env)


def in_thread(bot: RunningBot, card: dict[str, Any], action: ActionId) -> dict[str, Any] | None:
    """Return the last message of the card's thread that shows this action, if any."""
    found = [m for m in bot.fake.thread(card["channel"], card["ts"]) if has_action(m, action)]
    return found[-1] if found else None


def options(bot: RunningBot, card: dict[str, Any]) -> dict[str, Any] | None:
    """Return the thread message offering the guide's options after a failure, if any."""
    return in_thread(bot, card, ActionId.RETRY_STEP)


async def test_failed_middle_step_stops_the_plan_and_retry_finishes_it(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    docker_host: str,
    prisma_db: PrismaProject,
    sessions: tuple[redis.asyncio.Redis, str],
    redis_url: str,
    tmp_path: Path,
) -> None:
    client, prefix = sessions
    down = prisma_db.migrations_dir / ADD_ROLE / "down.sql"
    good_down = down.read_text()
    down.write_text("ALTER TABLE users DROP COLUMN nonexistent;")
    before = await prisma_db.snapshot()
    container, bot = await start(
        start_rollbot, compose_container, prisma_db, prefix, redis_url, tmp_path
    )

    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")
    shown = text_of(card)
    assert "3 steps, run in order" in shown
    assert "1. docker_compose: v1.2.4 → v1.2.3" in shown
    assert f"2. database (postgres_migrations): {ADD_POSTS} → {INIT}" in shown
    assert "3. sessions (redis_state)" in shown and f"{SESSIONS} keys" in shown

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    offered = await bot.fake.wait_for(lambda: options(bot, card))

    # Step 1 ran, step 2 failed and undid itself, step 3 never started.
    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")
    assert await prisma_db.snapshot() == before
    assert len([key async for key in client.scan_iter(match=f"{prefix}:*")]) == SESSIONS
    thread = thread_text(bot.fake, card)
    assert "Step 2 of 3 (database) failed" in thread
    assert "1. docker_compose: v1.2.4 → v1.2.3: *done*" in thread
    assert f"2. database (postgres_migrations): {ADD_POSTS} → {INIT}: *failed*" in thread
    assert "3. sessions (redis_state): *not run*" in thread
    assert f"2. database (failed): the database is unchanged (still at migration {ADD_POSTS})" in (
        thread
    )
    assert "/rollback restore database backend env=production" in thread
    assert has_action(offered, ActionId.RESTORE_DATABASE) and has_action(
        offered, ActionId.FIX_FORWARD
    )
    (rb,) = await bot.store.find()
    assert (rb.state, rb.failed_step) == (State.FAILED, 1)
    assert [s.status for s in rb.steps] == [StepStatus.DONE, StepStatus.FAILED, StepStatus.NOT_RUN]
    assert await bot.store.locks() == []
    # The card does not say the plan's target runs: it says each step's state.
    fields = card_fields(await wait_card(bot, card, lambda m: "failed" in text_of(m)))
    assert "Running now" not in fields
    assert (fields["Before the rollback"], fields["Tried to roll back to"]) == (
        "`v1.2.4`",
        "`v1.2.3`",
    )
    assert "2. database (failed): the database is unchanged" in fields["State now"]

    # "Restore database…" offers the backup step 2 took, behind its own confirmation.
    await bot.slack.click(
        offered["channel"], offered["ts"], ActionId.RESTORE_DATABASE, user=REQUESTER
    )
    offer = await bot.fake.wait_for(lambda: in_thread(bot, card, ActionId.RESTORE_CONFIRM))
    (backup,) = (tmp_path / "pg").iterdir()
    assert f"Restore backend/production database `database` from backup `{backup.name}`" in (
        text_of(offer)
    )
    await prisma_db.execute("DELETE FROM posts")
    await bot.slack.click(offer["channel"], offer["ts"], ActionId.RESTORE_CONFIRM, user=APPROVER)
    await bot.fake.wait_for(
        lambda: f"Restored {backup.name}: database" in thread_text(bot.fake, card)
    )
    assert await prisma_db.snapshot() == before
    assert await bot.store.locks() == []

    # Someone without rights cannot retry; the requester can, once down.sql is fixed.
    await bot.slack.click(offered["channel"], offered["ts"], ActionId.RETRY_STEP, user=OUTSIDER)
    await bot.fake.wait_for(lambda: "Only the requester or an approver" in ephemeral_text(bot.fake))
    down.write_text(good_down)
    await bot.slack.click(offered["channel"], offered["ts"], ActionId.RETRY_STEP, user=REQUESTER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))

    assert await prisma_db.tables() == {"users", "_prisma_migrations"}
    assert await prisma_db.migration_rows() == {
        INIT: (True, False),
        ADD_ROLE: (True, True),
        ADD_POSTS: (True, True),
    }
    assert [key async for key in client.scan_iter(match=f"{prefix}:*")] == []
    assert len(list((tmp_path / "redis").iterdir())) == 1
    thread = thread_text(bot.fake, card)
    assert "running again from step 2 (database)" in thread
    # Each step reported once: the progress replies, not the timeline that sums them up.
    replies = [text_of(m) for m in bot.fake.thread(card["channel"], card["ts"])]
    progress = "\n".join(t for t in replies if t.startswith(":gear:"))
    assert progress.count(f"Deleted {SESSIONS} keys matching `{prefix}:*`") == 1
    assert progress.count("Step 1/3: docker_compose: v1.2.4 → v1.2.3") == 1
    assert not has_action(bot.fake.message(offered["channel"], offered["ts"]), ActionId.RETRY_STEP)
    (rb,) = await bot.store.find()
    assert rb.state is State.SUCCEEDED
    assert [s.status for s in rb.steps] == [StepStatus.DONE] * 3
    fields = card_fields(await wait_card(bot, card, lambda m: "succeeded" in text_of(m)))
    assert (fields["Running now"], fields["Before the rollback"]) == ("`v1.2.3`", "`v1.2.4`")
    assert "State now" not in fields
    kinds = [e.kind for e in await bot.store.events(rb.id)]
    assert kinds.count("retry") == 1 and kinds.count("failed") == 1
    assert len(cards(bot.fake)) == 1


async def test_a_plan_that_flushes_redis_is_approved_only_with_the_danger_button(
    start_rollbot: StartBot,
    git_remote: GitRemote,
    http_server: HttpServerFactory,
    scratch_db: str,
    tmp_path: Path,
) -> None:
    client = redis.asyncio.Redis.from_url(scratch_db)
    await client.set("cache:home", "stale", px=600_000)
    health = await http_server(200, "ok")
    provider = {
        "provider": "git",
        "repository": str(git_remote.bare),
        "branch": "main",
        "mode": "tag",
        "cache_dir": str(tmp_path / "cache"),
    }
    config = service_config("web", provider, health.url)
    config["services"]["web"]["environments"]["production"]["steps"] = [
        {
            "name": "cache",
            "provider": {
                "provider": "redis_state",
                "flush_database": True,
                "backup_dir": str(tmp_path / "redis"),
            },
        }
    ]
    bot = await start_rollbot(config, extra_env={"REDIS_URL": scratch_db})
    try:
        card = await request_card(bot, "web v1.2.3")
        await confirm(bot, card, "critical_bug")
        card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE_DANGER))
        assert not has_action(card, ActionId.APPROVE)
        assert "This plan deletes data" in text_of(card)
        (button,) = [
            e
            for b in card["blocks"]
            for e in b.get("elements") or []
            if e.get("action_id") == ActionId.APPROVE_DANGER
        ]
        assert button["style"] == "danger"
        assert "FLUSHDB empties the whole Redis database" in button["confirm"]["text"]["text"]

        await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE_DANGER, user=APPROVER)
        await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
        assert await client.dbsize() == 0
        assert git_remote.refs().get("refs/tags/v1.2.3-rollback") is not None
        thread = thread_text(bot.fake, card)
        assert "Step 2/2 (cache)" in thread
        kinds = [e.kind for e in await bot.store.events((await bot.store.find())[0].id)]
        assert "danger_confirmed" in kinds
    finally:
        await client.aclose()
