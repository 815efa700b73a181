"""End to end: `/rollback backups` and `/rollback restore` through a real `rollbot serve --http`.

A real PostgreSQL (its Prisma migrations rolled back by the bot, then rows deleted) and a
real Redis (keys cleared by the redis_state step) are restored from their backups after an
approver's explicit confirmation.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import parse_config
from bot.engine import Engine
from bot.pool import ProviderPool
from handlers.ids import ActionId
from handlers.restores import offer_restore
from providers.redis_state import RedisStateProvider, RedisStateSettings
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    OUTSIDER,
    REQUESTER,
    cards,
    ephemeral_text,
    has_action,
    ready_to_approve,
    thread_text,
    wait_card,
)
from tests.support.bot import BOT_TOKEN, RunningBot, StartBot
from tests.support.migrations import ADD_POSTS, ADD_ROLE, PrismaProject, with_database
from tests.support.progress import Recorder
from tests.support.slack import text_of

PASSWORD = "e2e-Restore-pw-35"
# How the offer's message starts its last line once the restore has ended.
OUTCOMES = (":large_green_circle:", ":red_circle:", ":warning:")


def shop(provider: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A config with one service, `shop`, whose restores only U_APPROVER may confirm."""
    return {
        "approval": {"approvers": {"users": [APPROVER]}, "required_approvals": 1},
        "runtime": {"verify_deadline_seconds": 20, "verify_interval_seconds": 0.5},
        "services": {
            "shop": {
                "environments": {
                    "production": {
                        "provider": provider,
                        "steps": steps or [],
                        "checks": [
                            {"name": "database", "type": "postgres", "dsn_env": "DATABASE_URL"}
                        ]
                        if provider["provider"] == "postgres_migrations"
                        else [],
                    }
                }
            }
        },
    }


async def ask(bot: RunningBot, text: str, user: str = REQUESTER) -> str:
    """Run a command and return the private answer it got."""
    before = ephemeral_text(bot.fake)
    status, _ = await bot.slack.command(text, user=user, channel=CHANNEL)
    assert status == 200
    answer: str = await bot.fake.wait_for(
        lambda: (now := ephemeral_text(bot.fake)) != before and now[len(before) :].strip()
    )
    return answer


async def offer(bot: RunningBot, text: str) -> dict[str, Any]:
    """Run a restore command and return the offer it posts in the channel."""
    status, _ = await bot.slack.command(text, user=REQUESTER, channel=CHANNEL)
    assert status == 200
    return await bot.fake.wait_for(
        lambda: next((m for m in cards(bot.fake) if has_action(m, ActionId.RESTORE_CONFIRM)), None)
    )


def restore_button(message: dict[str, Any]) -> dict[str, Any]:
    return next(
        element
        for block in message["blocks"]
        for element in block.get("elements") or []
        if element.get("action_id") == ActionId.RESTORE_CONFIRM
    )


async def refused_for_outsider(bot: RunningBot, message: dict[str, Any]) -> None:
    """An outsider's click is answered privately and changes nothing."""
    await bot.slack.click(
        message["channel"], message["ts"], ActionId.RESTORE_CONFIRM, user=OUTSIDER
    )
    await bot.fake.wait_for(
        lambda: "Only an approver of shop/production can confirm" in ephemeral_text(bot.fake)
    )
    assert has_action(bot.fake.message(message["channel"], message["ts"]), ActionId.RESTORE_CONFIRM)
    assert bot.fake.thread(message["channel"], message["ts"]) == []


async def confirmed(bot: RunningBot, message: dict[str, Any]) -> dict[str, Any]:
    """The approver clicks "Restore now"; return the message once it shows the result."""
    await bot.slack.click(
        message["channel"], message["ts"], ActionId.RESTORE_CONFIRM, user=APPROVER
    )
    return await wait_card(bot, message, lambda m: any(mark in text_of(m) for mark in OUTCOMES))


async def test_database_restore_after_a_rollback(
    start_rollbot: StartBot, prisma_db: PrismaProject, tmp_path: Path
) -> None:
    provider = {
        "provider": "postgres_migrations",
        "migrations_dir": str(prisma_db.migrations_dir),
        "backup_dir": str(tmp_path / "backups"),
    }
    dsn = with_database(prisma_db.dsn, prisma_db.dsn.rsplit("/", 1)[1], PASSWORD)
    bot = await start_rollbot(shop(provider), extra_env={"DATABASE_URL": dsn})
    assert "No backups of shop/production database yet" in await ask(bot, "backups database")

    # A failed migration: roll back to ADD_ROLE (its backup is taken first), then lose rows.
    card = await ready_to_approve(bot, f"shop {ADD_ROLE}", "failed_migration")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    await prisma_db.execute("DELETE FROM users WHERE email = 'bob@example.com'")
    assert "posts" not in await prisma_db.tables()
    (backup,) = (p.name for p in (tmp_path / "backups").iterdir())

    listed = await ask(bot, "backups database shop")
    assert "*Backups of shop/production database*" in listed
    assert f"`{backup}`" in listed and "pre-rollback" in listed and " UTC" in listed
    assert "`/rollback restore database shop BACKUP env=production`" in listed

    message = await offer(bot, "restore database")
    shown = text_of(message)
    assert f"Restore shop/production database from backup `{backup}`" in shown
    assert "backed up first" in shown and f"<@{APPROVER}>" in shown
    button = restore_button(message)
    assert button["style"] == "danger"
    assert button["confirm"]["title"]["text"] == "Restore shop/production database?"
    assert backup in button["confirm"]["text"]["text"]
    assert button["confirm"]["confirm"]["text"] == "Restore"
    assert button["confirm"]["deny"]["text"] == "Keep as is"
    assert has_action(message, ActionId.RESTORE_CANCEL)

    await refused_for_outsider(bot, message)
    assert [r["email"] for r in await prisma_db.sql("SELECT email FROM users")] == [
        "ada@example.com"
    ]

    done = await confirmed(bot, message)

    assert not has_action(done, ActionId.RESTORE_CONFIRM)
    assert not has_action(done, ActionId.RESTORE_CANCEL)
    assert f"Confirmed by <@{APPROVER}>. Restored {backup}: database" in text_of(done)
    rows = await prisma_db.sql(
        "SELECT u.email, u.role, p.title FROM users u JOIN posts p ON p.user_id = u.id "
        "ORDER BY u.email"
    )
    assert [tuple(r.values()) for r in rows] == [
        ("ada@example.com", "admin", "hello from ada@example.com"),
        ("bob@example.com", "member", "hello from bob@example.com"),
    ]
    assert (await prisma_db.migration_rows())[ADD_POSTS] == (True, False)
    thread = "\n".join(text_of(m) for m in bot.fake.thread(CHANNEL, message["ts"]))
    assert f"Restore confirmed by <@{APPROVER}>" in thread
    assert "first backing up the database as it is" in thread
    assert f"Restored {backup}: database" in thread and f"at migration {ADD_POSTS}" in thread
    assert "pre-restore" in thread
    assert await bot.store.locks() == []
    actions = [e.action for e in await bot.store.audit_log() if e.action.startswith("restore")]
    assert actions == ["restore_requested", "restore_confirmed", "restore_finished"]
    assert PASSWORD not in bot.log() and PASSWORD not in thread


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=10)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis_client: redis.asyncio.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own in the shared Redis; its keys are deleted after."""
    name = f"rollbot-e2e-{secrets.token_hex(4)}"
    yield name
    keys = [key async for key in redis_client.scan_iter(match=f"{name}:*")]
    if keys:
        await redis_client.delete(*keys)


def sessions_config(prefix: str, backup_dir: Path) -> dict[str, Any]:
    """`shop` runs on compose; its redis_state step `sessions` clears `PREFIX:*`."""
    step = {"provider": "redis_state", "pattern": f"{prefix}:*", "backup_dir": str(backup_dir)}
    web = {"provider": "docker_compose", "project": "shop", "service": "web"}
    return shop(web, [{"name": "sessions", "provider": step}])


async def cleared(
    client: redis.asyncio.Redis, config: dict[str, Any], prefix: str, backup_dir: Path
) -> str:
    """Seed two keys, then clear them as a rollback's redis_state step does; return the backup."""
    await client.set(f"{prefix}:session:1", "ann", px=600_000)
    await client.hset(f"{prefix}:cart:1", mapping={"apples": "3"})
    step = config["services"]["shop"]["environments"]["production"]["steps"][0]["provider"]
    clearing = RedisStateProvider(RedisStateSettings.model_validate(step))
    try:
        await clearing.clear(Recorder())
    finally:
        await clearing.aclose()
    assert await client.exists(f"{prefix}:session:1", f"{prefix}:cart:1") == 0
    (backup,) = (p.name for p in backup_dir.iterdir())
    return backup


async def test_redis_restore_puts_cleared_keys_back(
    start_rollbot: StartBot,
    redis_url: str,
    redis_client: redis.asyncio.Redis,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    config = sessions_config(prefix, tmp_path / "redis-backups")
    bot = await start_rollbot(config, extra_env={"REDIS_URL": redis_url})
    backup = await cleared(redis_client, config, prefix, tmp_path / "redis-backups")

    listed = await ask(bot, "backups redis")
    assert "*Backups of shop/production redis `sessions`*" in listed
    assert f"`{backup}`" in listed and "2 keys" in listed

    message = await offer(bot, "restore redis shop")
    assert "put back with the TTL it had left" in text_of(message)
    assert restore_button(message)["confirm"]["title"]["text"] == (
        "Restore shop/production redis sessions?"
    )
    await refused_for_outsider(bot, message)
    assert await redis_client.exists(f"{prefix}:session:1") == 0

    done = await confirmed(bot, message)

    assert not has_action(done, ActionId.RESTORE_CONFIRM)
    assert "*Restore shop/production redis `sessions`* from backup" in text_of(done)
    assert f"Confirmed by <@{APPROVER}>. Restored 2 keys" in text_of(done)
    assert await redis_client.get(f"{prefix}:session:1") == b"ann"
    assert 0 < await redis_client.pttl(f"{prefix}:session:1") <= 600_000
    assert await redis_client.hgetall(f"{prefix}:cart:1") == {b"apples": b"3"}
    assert await redis_client.pttl(f"{prefix}:cart:1") == -1
    thread = "\n".join(text_of(m) for m in bot.fake.thread(CHANNEL, message["ts"]))
    assert f"Restored 2 keys of {backup}" in thread
    assert await bot.store.locks() == []


async def test_an_offer_in_a_thread_is_answered_in_that_thread(
    start_rollbot: StartBot,
    redis_url: str,
    redis_client: redis.asyncio.Redis,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    config = sessions_config(prefix, tmp_path / "redis-backups")
    bot = await start_rollbot(config, extra_env={"REDIS_URL": redis_url})
    backup = await cleared(redis_client, config, prefix, tmp_path / "redis-backups")
    # What a button in a failed rollback's thread does: offer the restore in that thread,
    # from code sharing the bot's store; the bot process answers the clicks.
    client = AsyncWebClient(token=BOT_TOKEN, base_url=bot.fake.base_url)
    root = await client.chat_postMessage(channel=CHANNEL, text="Rollback rb-0a1b2c3d failed")
    parsed = parse_config(config)
    engine = Engine(parsed, bot.store, ProviderPool(parsed))

    async def offered() -> dict[str, Any]:
        await offer_restore(
            engine, client, CHANNEL, REQUESTER, "redis", "shop", "production", thread_ts=root["ts"]
        )
        return next(
            m
            for m in reversed(bot.fake.thread(CHANNEL, root["ts"]))
            if has_action(m, ActionId.RESTORE_CONFIRM)
        )

    try:
        first = await offered()
        assert backup in text_of(first)
        await bot.slack.click(CHANNEL, first["ts"], ActionId.RESTORE_CANCEL, user=OUTSIDER)
        await bot.fake.wait_for(
            lambda: "Only the requester or an approver" in ephemeral_text(bot.fake)
        )
        await bot.slack.click(CHANNEL, first["ts"], ActionId.RESTORE_CANCEL, user=REQUESTER)
        cancelled = await wait_card(bot, first, lambda m: "Cancelled by" in text_of(m))
        assert f"Cancelled by <@{REQUESTER}>; nothing was changed." in text_of(cancelled)
        assert not has_action(cancelled, ActionId.RESTORE_CONFIRM)
        assert await redis_client.exists(f"{prefix}:session:1") == 0

        second = await offered()
        await confirmed(bot, second)
        assert await redis_client.get(f"{prefix}:session:1") == b"ann"
        replies = [text_of(m) for m in bot.fake.thread(CHANNEL, root["ts"])]
        assert any(f"Restored 2 keys of {backup}" in r for r in replies)
        assert bot.fake.thread(CHANNEL, first["ts"]) == []  # never a thread in a thread
        actions = [e.action for e in await bot.store.audit_log()]
        assert actions == [
            "restore_requested",
            "restore_cancelled",
            "restore_requested",
            "restore_confirmed",
            "restore_finished",
        ]
    finally:
        await engine.providers.aclose()
