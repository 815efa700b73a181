"""Long content end to end: a huge provider error and a long version list reach the user.

Slack refuses a message over its limits (`msg_too_long`, `invalid_blocks`); whatever the
bot sends must fit, be split over several messages or say plainly what was left out.
"""

from __future__ import annotations

from pathlib import Path

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import APPROVER, CHANNEL, REQUESTER, ready_to_approve, thread_text
from tests.support.bot import StartBot
from tests.support.gitrepos import GitRemote, git
from tests.support.migrations import ADD_ROLE, INIT, PrismaProject
from tests.support.services import HttpServerFactory
from tests.support.slack import FakeSlack, text_of
from tests.test_e2e_git import git_config
from tests.test_e2e_migrations import start

REFUSED = {"msg_too_long", "invalid_blocks", "invalid_blocks_format", "no_text"}
MIGRATIONS = 120
LONG_NAME = "add_a_column_" + "_".join(["with_a_long_descriptive_name"] * 5)


def refusals(fake: FakeSlack) -> list[str]:
    """Every call or response_url post Slack refused for its size or shape."""
    found = [
        f"{c.method}: {c.response.get('error')}"
        for c in fake.calls
        if c.response.get("error") in REFUSED
    ]
    return found + [f"response_url: {error}" for error in fake.response_errors]


async def test_a_rollback_of_120_long_named_migrations_fits_every_message(
    start_rollbot: StartBot, prisma_db: PrismaProject, tmp_path: Path
) -> None:
    # 120 migrations with long names: a plan, progress lines and a target state far longer
    # than a card's section or a message holds; the oldest one's down.sql fails at the end.
    for i in range(MIGRATIONS):
        name = f"2024040100{i:04d}_{LONG_NAME}_{i}"
        prisma_db.write(name, "SELECT 1;", "SELECT 1;")
        await prisma_db.apply(name)
    (prisma_db.migrations_dir / ADD_ROLE / "down.sql").write_text(
        "DO $$ BEGIN RAISE EXCEPTION 'the broken down migration: %', repeat('why ', 150); END $$;"
    )
    bot = await start(start_rollbot, prisma_db, tmp_path)

    card = await ready_to_approve(bot, f"db {INIT}", "failed_migration")
    fake = bot.fake
    shown = text_of(fake.message(card["channel"], card["ts"]))
    assert f"{LONG_NAME}_{MIGRATIONS - 1}" in shown, shown
    assert "more line" in shown, shown
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await fake.wait_for(lambda: "What now?" in thread_text(fake, card), timeout=60)

    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED
    assert refusals(fake) == [], fake.dump()
    thread = thread_text(fake, card)
    assert "the broken down migration: why why" in thread
    assert f"{LONG_NAME}_{MIGRATIONS - 1}" in thread
    assert all(len(m["text"]) <= 40_000 for m in fake.messages())


async def test_a_list_of_200_versions_is_answered_whole_in_parts(
    start_rollbot: StartBot,
    git_remote: GitRemote,
    http_server: HttpServerFactory,
    tmp_path: Path,
) -> None:
    work = git_remote.work
    for i in range(200):
        git("tag", f"v2.0.{i}-release-candidate-with-a-rather-long-name", "v1.2.2", cwd=work.path)
    work.push()
    health = await http_server(200, "ok")
    bot = await start_rollbot(git_config(git_remote, tmp_path / "cache", health.url))

    status, _ = await bot.slack.command("list web", user=REQUESTER, channel=CHANNEL)

    assert status == 200
    fake = bot.fake
    answer = await fake.wait_for(
        lambda: (
            (t := "\n".join(str(b.get("text", "")) for _, b in fake.responses))
            and "v2.0.199-release" in t
            and "v1.2.2" in t
            and t
        ),
        timeout=30,
    )
    assert refusals(fake) == [], fake.dump()
    for i in range(200):
        assert f"v2.0.{i}-release-candidate" in answer
    assert all(len(str(b.get("text", ""))) <= 4_000 for _, b in fake.responses)
