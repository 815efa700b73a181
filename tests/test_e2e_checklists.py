"""End to end: the checklist, the user-notification draft and the status page in a thread."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.checklists import checklist_sections
from bot.models import State
from bot.records import Delivery
from bot.time_words import time_range
from handlers.ids import NOTIFICATION_INPUT, ActionId, BlockId, CallbackId
from tests.e2e_helpers import (
    APPROVER,
    OUTSIDER,
    REQUESTER,
    backend_config,
    confirm,
    ephemeral_text,
    has_action,
    ready_to_approve,
    request_card,
    thread_text,
    wait_card,
)
from tests.support.bot import RunningBot, StartBot
from tests.support.docker import ComposeContainerFactory, unique_project
from tests.support.migrations import INIT, PrismaProject
from tests.support.services import FakeHttpServer, HttpServerFactory
from tests.support.slack import FakeSlack, text_of
from tests.support.waiting import wait_for
from tests.test_e2e_migrations import start as start_migrations

USERS = "C_USERS"
SECRET = "status-page-secret-5d0e7b"
DONE_BY_ROLLBOT = {"execute", "services_healthy", "smoke_tests", "status_page"}


def _marked(message: dict[str, Any], prefix: str) -> bool:
    return any(str(b.get("block_id", "")).startswith(f"{prefix}:") for b in message["blocks"])


def checklist(fake: FakeSlack, card: dict[str, Any]) -> dict[str, Any] | None:
    """The checklist message in a card's thread, as it is now."""
    found = [m for m in fake.thread(card["channel"], card["ts"]) if _marked(m, BlockId.CHECKLIST)]
    assert len(found) <= 1, "the checklist was posted twice"
    return found[0] if found else None


def draft(fake: FakeSlack, card: dict[str, Any]) -> dict[str, Any] | None:
    """The user-notification draft in a card's thread, as it is now."""
    found = [
        m for m in fake.thread(card["channel"], card["ts"]) if _marked(m, BlockId.USER_NOTIFICATION)
    ]
    assert len(found) <= 1, "the draft was posted twice"
    return found[0] if found else None


def ticked(message: dict[str, Any]) -> set[str]:
    """The boxes a checklist message shows ticked."""
    return {
        option["value"]
        for block in message["blocks"]
        for element in block.get("elements") or []
        if element.get("type") == "checkboxes"
        for option in element.get("initial_options") or []
    }


async def succeed(bot: RunningBot, card: dict[str, Any]) -> None:
    """Confirm a critical bug, approve, and wait for the rollback to succeed."""
    await confirm(bot, card, "critical_bug")
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))


async def start(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    status: FakeHttpServer,
    notifications: dict[str, Any],
) -> RunningBot:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(container.project, container.port)
    config["notifications"] = notifications | {
        "status_page": {"url": f"http://127.0.0.1:{status.port}/hooks/rollbot"}
        | notifications.get("status_page", {})
    }
    return await start_rollbot(config, {"STATUS_PAGE_TOKEN": SECRET})


async def test_checklist_draft_and_status_page_after_a_success(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    http_server: HttpServerFactory,
) -> None:
    status = await http_server(200, "{}")
    page = {"secret_header": "X-Status-Token", "secret_env": "STATUS_PAGE_TOKEN"}
    bot = await start(
        start_rollbot, compose_container, status, {"user_channel": USERS, "status_page": page}
    )
    fake = bot.fake
    # The requester's Slack profile says Berlin: the notification's times are Berlin's.
    fake.register_user(REQUESTER, "ana", tz="Europe/Berlin")

    # The checklist comes with the card, nothing ticked yet.
    card = await request_card(bot, "backend v1.2.3")
    posted = await fake.wait_for(lambda: checklist(fake, card))
    shown = text_of(posted)
    for title in ("Pre-Rollback", "During Rollback", "Post-Rollback"):
        assert title in shown
    assert "Schedule postmortem" in shown and "Create database backup" in shown
    assert ticked(posted) == set()
    (rb,) = await bot.store.find()

    async def kept() -> Delivery | None:
        # The bot keeps the message's ts once Slack has answered its post.
        found = await bot.store.delivery(rb.id, "checklist")
        return found if found is not None and found.ts is not None else None

    stored = await wait_for(kept, "the checklist message's ts in the store", 10)
    assert stored.ts == posted["ts"]

    await succeed(bot, card)

    # rollbot ticks what it did: executed, verified, checked, told the status page.
    done = await fake.wait_for(
        lambda: (m := checklist(fake, card)) and DONE_BY_ROLLBOT <= ticked(m) and m
    )
    assert ticked(done) == DONE_BY_ROLLBOT  # no backup: this plan has no database step
    assert "by rollbot" in text_of(done) and "1/1 checks passed" in text_of(done)

    # The status page heard "investigating" then "resolved", with the secret header.
    received = [r.json() for r in status.received]
    assert [r["status"] for r in received] == ["investigating", "resolved"]
    assert all(r.headers["X-Status-Token"] == SECRET for r in status.received)
    assert {r["rollback_id"] for r in received} == {rb.id}
    assert received[1]["service"] == "backend" and received[1]["environment"] == "production"
    assert "resolved" in received[1]["message"] and received[1]["at"]

    # A person ticks an item; it is stored, audited and shown with their name.
    await bot.slack.toggle_checkbox(
        done["channel"], done["ts"], ActionId.CHECKLIST, "error_logs", user=REQUESTER
    )
    shown_tick = await fake.wait_for(
        lambda: (m := checklist(fake, card)) and "error_logs" in ticked(m) and m
    )
    assert f"by <@{REQUESTER}>" in text_of(shown_tick)
    marks = await bot.store.checklist_marks(rb.id)
    assert [(m.item, m.done, m.actor) for m in marks] == [("error_logs", True, REQUESTER)]
    audit = await bot.store.audit_log(rb.id)
    assert (REQUESTER, "checklist_tick") in {(a.actor, a.action) for a in audit}

    # Nobody removes a tick rollbot made.
    await bot.slack.toggle_checkbox(
        shown_tick["channel"], shown_tick["ts"], ActionId.CHECKLIST, "execute", user=OUTSIDER
    )
    await fake.wait_for(lambda: "cannot be removed" in ephemeral_text(fake))
    after = checklist(fake, card)
    assert after is not None and ticked(after) == DONE_BY_ROLLBOT | {"error_logs"}
    assert len(await bot.store.checklist_marks(rb.id)) == 1

    # The user notification waits as a draft with a button to the users' channel.
    offered = await fake.wait_for(lambda: draft(fake, card))
    assert "DRAFT" in text_of(offered) and f"<#{USERS}>" in text_of(offered)
    finished = await bot.store.get(rb.id)
    assert finished is not None and finished.finished_at is not None
    when = time_range(finished.created_at, finished.finished_at, "Europe/Berlin")
    assert when.endswith((" CET", " CEST")), when
    assert f"We briefly experienced technical difficulties {when}." in text_of(offered)
    assert has_action(offered, ActionId.POST_USER_NOTIFICATION)
    assert "Post to #c_users" in text_of(offered)

    await bot.slack.click(
        offered["channel"], offered["ts"], ActionId.POST_USER_NOTIFICATION, user=OUTSIDER
    )
    await fake.wait_for(lambda: "Only the requester or an approver" in ephemeral_text(fake))
    assert fake.messages(USERS) == []

    # Edit: the modal holds the text; what is saved is what gets posted.
    await bot.slack.click(
        offered["channel"], offered["ts"], ActionId.EDIT_USER_NOTIFICATION, user=REQUESTER
    )
    view = await fake.wait_for(lambda: fake.views and fake.find_view(CallbackId.USER_NOTIFICATION))
    prefilled = view["blocks"][0]["element"]["initial_value"]
    assert "We apologize for any inconvenience." in prefilled
    edited = prefilled + "\nThe pmcrm team"
    await bot.slack.submit_view(
        view["id"], {BlockId.USER_NOTIFICATION: {NOTIFICATION_INPUT: edited}}, user=REQUESTER
    )
    await fake.wait_for(lambda: (m := draft(fake, card)) and "The pmcrm team" in text_of(m))

    # Two people press Post at once: it goes out exactly once.
    await asyncio.gather(
        bot.slack.click(
            offered["channel"], offered["ts"], ActionId.POST_USER_NOTIFICATION, user=REQUESTER
        ),
        bot.slack.click(
            offered["channel"], offered["ts"], ActionId.POST_USER_NOTIFICATION, user=APPROVER
        ),
    )
    final = await fake.wait_for(
        lambda: (m := draft(fake, card)) and "Posted by" in text_of(m) and m
    )
    (public,) = fake.messages(USERS)
    assert public["text"].endswith("The pmcrm team")
    assert f"We briefly experienced technical difficulties {when}." in public["text"]
    assert not has_action(final, ActionId.POST_USER_NOTIFICATION)
    assert " at " in text_of(final) and "UTC" in text_of(final)
    events = [e for e in await bot.store.events(rb.id) if e.kind == "user_notification"]
    assert len(events) == 1 and events[0].actor in {REQUESTER, APPROVER}
    assert f"Posted by <@{events[0].actor}>" in text_of(final)
    await fake.wait_for(lambda: "already" in ephemeral_text(fake))

    # The secret went to the status page only.
    assert SECRET not in bot.log()
    assert all(SECRET not in text_of(m) for m in fake.messages())


async def test_a_failing_status_page_never_fails_the_rollback(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    http_server: HttpServerFactory,
) -> None:
    status = await http_server(500, "status page down")
    bot = await start(start_rollbot, compose_container, status, {})
    fake = bot.fake
    card = await request_card(bot, "backend v1.2.3")
    await succeed(bot, card)

    for said in ("investigating", "resolved"):
        await fake.wait_for(
            lambda s=said: f"status page was not told “{s}”" in thread_text(fake, card)
        )
    (rb,) = await bot.store.find()
    assert rb.state is State.SUCCEEDED
    assert status.requests == 6  # each status: three attempts, then never again
    thread = thread_text(fake, card)
    assert thread.count("status page was not told") == 2
    assert "HTTP 500" in thread

    # Without a users' channel the draft says so and offers no Post button.
    offered = await fake.wait_for(lambda: draft(fake, card))
    assert "No `notifications.user_channel` is configured" in text_of(offered)
    assert not has_action(offered, ActionId.POST_USER_NOTIFICATION)
    shown = checklist(fake, card)
    assert shown is not None and "status_page" not in ticked(shown)

    # A dry run changes nothing, so it gets no checklist, no draft and no status.
    rehearsal = await request_card(bot, "backend v1.2.4 --dry-run")
    await confirm(bot, rehearsal, "critical_bug")
    await fake.wait_for(lambda: "Dry run complete" in thread_text(fake, rehearsal))
    assert checklist(fake, rehearsal) is None and draft(fake, rehearsal) is None
    assert status.requests == 6


async def test_a_database_rollback_ticks_its_backup(
    start_rollbot: StartBot, prisma_db: PrismaProject, tmp_path: Path
) -> None:
    bot = await start_migrations(start_rollbot, prisma_db, tmp_path)
    card = await ready_to_approve(bot, f"db {INIT}", "failed_migration")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))

    (backup,) = (tmp_path / "backups").iterdir()
    shown = await bot.fake.wait_for(
        lambda: (m := checklist(bot.fake, card)) and "database_backup" in ticked(m) and m
    )
    assert ticked(shown) == {"database_backup", "execute", "services_healthy", "smoke_tests"}
    assert "by rollbot · " in text_of(shown) and f"backup {backup.name[:16]}" in text_of(shown)
    (rb,) = await bot.store.find()
    sections = await checklist_sections(bot.store, bot.store, rb.id)
    (item,) = [i for s in sections for i in s.items if i.key == "database_backup"]
    assert (item.by, item.note) == ("rollbot", f"backup {backup.name}")
