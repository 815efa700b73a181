"""End to end: the Slack conversation rolls a Vercel frontend back, against the fake API."""

from __future__ import annotations

from typing import Any

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    cards,
    ephemeral_text,
    ready_to_approve,
    service_config,
    thread_text,
)
from tests.support.bot import RunningBot, StartBot
from tests.support.services import HttpServerFactory
from tests.support.slack import text_of
from tests.support.vercel import FakeVercel


def frontend_config(vercel: FakeVercel, check_url: str) -> dict[str, Any]:
    """A config with one vercel service verified over HTTP."""
    return service_config("frontend", vercel.settings(), check_url, check_name="frontend home")


async def start(
    start_rollbot: StartBot, vercel: FakeVercel, http_server: HttpServerFactory, token: str
) -> RunningBot:
    """Start a bot for the frontend with this Vercel token."""
    site = await http_server(200, "<html>frontend</html>")
    return await start_rollbot(frontend_config(vercel, site.url), extra_env={"VERCEL_TOKEN": token})


async def test_vercel_rollback_conversation(
    start_rollbot: StartBot, vercel: FakeVercel, http_server: HttpServerFactory
) -> None:
    bot = await start(start_rollbot, vercel, http_server, vercel.token)
    target = vercel.project.by_version("1.2.3")

    card = await ready_to_approve(bot, "frontend v1.2.3", "critical_bug")
    shown = text_of(card)
    assert "v1.2.4" in shown and "v1.2.3" in shown
    assert f"https://{target.url}" in shown  # the plan names the deployment
    assert f"/rollback/{target.uid}" in shown  # and the endpoint it will call
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))

    assert vercel.serving().uid == target.uid  # asked from the fake, not assumed
    assert len(vercel.routed("rollback")) == 1
    thread = thread_text(bot.fake, card)
    assert f"https://{target.url}" in thread and "alias job (rollback): succeeded" in thread
    assert "Verification passed" in thread and "frontend home" in thread
    (rb,) = await bot.store.find()
    assert (rb.state, rb.current_version, rb.target_version) == (
        State.SUCCEEDED,
        "v1.2.4",
        "v1.2.3",
    )
    assert await bot.store.locks() == []
    assert vercel.token not in bot.log()


async def test_a_failed_alias_job_is_reported_with_what_production_serves(
    start_rollbot: StartBot, vercel: FakeVercel, http_server: HttpServerFactory
) -> None:
    vercel.job_outcome = "failed"
    bot = await start(start_rollbot, vercel, http_server, vercel.token)
    serving = vercel.serving()

    card = await ready_to_approve(bot, "frontend v1.2.3", "critical_bug")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "What to do next" in thread_text(bot.fake, card))

    thread = thread_text(bot.fake, card)
    assert "failed" in thread and "ended `failed`" in thread
    assert f"production serves https://{serving.url} (v1.2.4)" in thread
    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED
    assert rb.target_state and f"https://{serving.url} (v1.2.4)" in rb.target_state
    assert await bot.store.locks() == []
    assert vercel.serving().uid == serving.uid
    assert len(vercel.routed("rollback")) == 1


async def test_a_rejected_token_gives_a_clear_error_at_request_time(
    start_rollbot: StartBot, vercel: FakeVercel, http_server: HttpServerFactory
) -> None:
    vercel.bad_token_status = 401
    wrong = "vercel-revoked-token-5f1c9a"
    bot = await start(start_rollbot, vercel, http_server, wrong)

    status, _ = await bot.slack.command("frontend v1.2.3", user="U_REQ", channel=CHANNEL)
    assert status == 200
    message = str(
        await bot.fake.wait_for(
            lambda: "token was rejected" in (t := ephemeral_text(bot.fake)) and t
        )
    )
    assert "Could not read versions of frontend/production" in message
    assert "HTTP 401" in message and "VERCEL_TOKEN" in message
    assert wrong not in message and wrong not in bot.log()
    assert cards(bot.fake) == []
    assert await bot.store.find() == []
    assert await bot.store.locks() == []
    assert vercel.routed("rollback") == []
