"""End to end: a real `rollbot serve --http` rolling back a service on a fake Railway."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    card_fields,
    cards,
    ephemeral_text,
    ready_to_approve,
    service_config,
    thread_text,
)
from tests.support.bot import RunningBot, StartBot
from tests.support.railway import CRASHES, FakeRailway
from tests.support.services import FakeHttpServer, HttpServerFactory
from tests.support.slack import text_of


def railway_config(railway: FakeRailway, health: FakeHttpServer) -> dict[str, Any]:
    """A config with one Railway service verified over HTTP."""
    provider = {
        "provider": "railway",
        "endpoint": railway.url,
        "token_env": "RAILWAY_TOKEN",
        "token_kind": "project",
        "project_id": railway.project_id,
        "service_id": railway.service_id,
        "environment_id": railway.environment_id,
        "poll_interval_seconds": 0.2,
        "deploy_timeout_seconds": 20,
    }
    return service_config("api", provider, health.url)


async def start(
    start_rollbot: StartBot, railway: FakeRailway, http_server: HttpServerFactory
) -> RunningBot:
    """Start a bot for the fake Railway service, its token in RAILWAY_TOKEN."""
    health = await http_server(200, "ok")
    config = railway_config(railway, health)
    return await start_rollbot(config, extra_env={"RAILWAY_TOKEN": railway.token})


async def test_railway_rollback_conversation(
    start_rollbot: StartBot, railway: FakeRailway, http_server: HttpServerFactory
) -> None:
    bot = await start(start_rollbot, railway, http_server)
    before, target = railway.by_tag("v1.2.4"), railway.by_tag("v1.2.3")

    # The image tag names the deployment: an alias the provider lists with it. The card
    # says each deployment by the version people know, its id beside it.
    card = await ready_to_approve(bot, "api v1.2.3", "critical_bug")
    fields = card_fields(card)
    assert fields["Running now"] == f"`v1.2.4 (deployment {before.id})`"
    assert fields["Roll back to"] == f"`v1.2.3 (deployment {target.id})`"
    assert f"Call deploymentRollback({target.id})" in text_of(card)

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    (upload,) = await bot.fake.wait_for(lambda: bot.fake.uploads(CHANNEL, card["ts"]))

    new = railway.serving()
    assert new is not None and new.id not in (before.id, target.id), railway.dump()
    assert new.status == "SUCCESS" and new.tag == "v1.2.3"
    assert railway.by_tag("v1.2.4").status == "REMOVED"
    assert railway.count("deploymentRollback") == 1
    thread = thread_text(bot.fake, card)
    for line in (f"New deployment {new.id}: SUCCESS.", f"Railway serves deployment {new.id}"):
        assert line in thread
    # What runs is the deployment the rollback made, a copy of v1.2.3.
    fields = card_fields(bot.fake.message(card["channel"], card["ts"]))
    assert fields["Running now"] == f"`v1.2.3 (deployment {new.id})`"
    assert fields["Before the rollback"] == f"`v1.2.4 (deployment {before.id})`"
    assert (
        f"*Resolution:* Rolled back to v1.2.3 (deployment {target.id}), from v1.2.4 "
        f"(deployment {before.id})"
    ) in thread
    report = upload["content"]
    assert f"| Version before | `v1.2.4 (deployment {before.id})` |" in report
    assert f"| Rolled back to | `v1.2.3 (deployment {target.id})` |" in report
    assert "Verification passed" in thread and "api health" in thread
    (rb,) = await bot.store.find()
    # The card and the store name the deployment the alias resolved to.
    assert (rb.state, rb.current_version, rb.target_version) == (
        State.SUCCEEDED,
        before.id,
        target.id,
    )
    assert await bot.store.locks() == []
    assert railway.token not in bot.log()


async def test_crashing_new_deployment_fails_and_says_what_railway_serves(
    start_rollbot: StartBot, railway: FakeRailway, http_server: HttpServerFactory
) -> None:
    railway.rollback_statuses = CRASHES
    bot = await start(start_rollbot, railway, http_server)
    before = railway.by_tag("v1.2.4")

    # No version: the previous stable deployment (v1.2.3, REMOVED since v1.2.4 replaced it).
    card = await ready_to_approve(bot, "api", "critical_bug")
    assert railway.by_tag("v1.2.3").id in text_of(card)
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "What to do next" in thread_text(bot.fake, card))

    crashed = railway.newest()
    assert crashed.status == "CRASHED", railway.dump()
    thread = thread_text(bot.fake, card)
    assert "failed" in thread and f"{crashed.id}" in thread and "ended CRASHED" in thread
    assert f"Railway serves deployment {before.id} (SUCCESS" in thread
    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED
    assert (rb.target_state or "").startswith(f"Railway serves deployment {before.id}")
    assert await bot.store.locks() == []
    assert railway.serving() is before
    assert railway.token not in bot.log()


async def test_deployment_railway_cannot_roll_back_to_is_refused_privately(
    start_rollbot: StartBot, railway: FakeRailway, http_server: HttpServerFactory
) -> None:
    bot = await start(start_rollbot, railway, http_server)
    old = railway.by_tag("v1.1.0")

    status, _ = await bot.slack.command(f"api {old.id}", user=REQUESTER, channel=CHANNEL)
    assert status == 200
    message = await bot.fake.wait_for(
        lambda: text if "canRollback" in (text := ephemeral_text(bot.fake)) else None
    )

    assert f"Railway does not allow rolling back to deployment {old.id}" in message
    assert cards(bot.fake) == []
    assert await bot.store.find() == []
    assert railway.count("deploymentRollback") == 0
    assert railway.serving() is railway.by_tag("v1.2.4")


async def test_a_frozen_railway_service_reports_a_redeploy_of_the_bad_commit(
    start_rollbot: StartBot, railway: FakeRailway, http_server: HttpServerFactory
) -> None:
    health = await http_server(200, "ok")
    config = railway_config(railway, health)
    config["runtime"] |= {"freeze_watch_seconds": 0.3, "scheduler_tick_seconds": 0.1}
    # Only an account token may turn auto-deploys off.
    config["services"]["api"]["environments"]["production"]["provider"]["token_kind"] = "account"
    bot = await start_rollbot(config, extra_env={"RAILWAY_TOKEN": railway.account_token})
    bad = railway.by_tag("v1.2.4")
    card = await ready_to_approve(bot, "api v1.2.3", "critical_bug")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    assert railway.auto_deploy is False

    # The rollback's own new deployment is what the freeze keeps, not drift.
    await asyncio.sleep(1.5)  # several rounds of the watch
    assert "is frozen, but" not in thread_text(bot.fake, card)

    # A pipeline run deploys the bad commit again: a new deployment id, the same build.
    again = railway.add("v1.2.4", "SUCCESS", age=timedelta(0))
    assert again.id != bad.id
    alert = await bot.fake.wait_for(
        lambda: next(
            (m for m in bot.fake.thread(CHANNEL, card["ts"]) if "is frozen, but" in text_of(m)),
            None,
        ),
        timeout=15,
    )
    # Named as people know it, with the platform's id beside it.
    assert f"now runs v1.2.4 (deployment {again.id}): the bad version" in text_of(alert)

    await bot.slack.command("unfreeze api", user=APPROVER, channel=CHANNEL)
    await bot.fake.wait_for(lambda: "Unfrozen by" in thread_text(bot.fake, card))
    assert railway.auto_deploy is True
