"""The bot's HTTP endpoint: request signing, bad input, and the read-only commands."""

from __future__ import annotations

import time

import httpx

from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    backend_config,
    cards,
    confirm,
    deploy,
    ephemeral_text,
    has_action,
    request_card,
    running_image,
    thread_text,
    wait_card,
)
from tests.support.bot import SIGNING_SECRET, StartBot
from tests.support.docker import ComposeContainerFactory, unique_project
from tests.support.slack import text_of


async def test_unsigned_forged_and_stale_requests_get_401_and_record_nothing(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    _before, bot = await deploy(start_rollbot, compose_container)
    fields = bot.slack.command_fields("backend v1.2.3", user=REQUESTER, channel=CHANNEL)
    body = httpx.QueryParams(fields).__str__().encode()

    unsigned = await bot.slack.raw(body, {"Content-Type": "application/x-www-form-urlencoded"})
    forged = await bot.slack.send(fields, secret=SIGNING_SECRET + "x")
    stale = await bot.slack.send(fields, timestamp=int(time.time()) - 6 * 60)
    tampered_headers = bot.slack.signed_headers(body)
    tampered = await bot.slack.raw(body.replace(b"v1.2.3", b"v1.2.2"), tampered_headers)

    assert [unsigned[0], forged[0], stale[0], tampered[0]] == [401, 401, 401, 401]
    assert await bot.store.find() == []
    assert bot.fake.calls_of("chat.postMessage") == []
    assert bot.fake.responses == []


async def test_bad_input_gets_a_clear_private_answer_and_changes_nothing(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    before, bot = await deploy(start_rollbot, compose_container)
    cases = {
        "frontend v1.2.3": "Unknown service 'frontend'. Known services: backend.",
        "backend v1.2.3 env=staging": "has no environment 'staging'",
        "backend v7.7.7": "Version v7.7.7 of backend/production is not available",
        "backend v1.2.4": "already runs v1.2.4",
        "backend v1.2.3;rm -rf /": "'v1.2.3;rm' is not a valid version",
        "backend " + "9" * 300: "is not a valid version",
        "backend v1.2.3 " + "x " * 300: "characters long",
        "backend 🚀": "'🚀' is not a valid version",
        "bäckend v1.2.3": "is not a valid service",
        "backend v1.2.3 now please": "Too many arguments",
        "backend v1.2.3 --force": "Unknown option '--force'",
        "cancel rb-00000000": "No rollback rb-00000000.",
    }
    for text, expected in cases.items():
        before_count = len(bot.fake.responses)
        status, _ = await bot.slack.command(text, user=REQUESTER, channel=CHANNEL)
        assert status == 200
        reply = await bot.fake.wait_for(
            lambda n=before_count: len(bot.fake.responses) > n and bot.fake.responses[-1][1]
        )
        assert expected in reply["text"], (text, reply)
        # The answer says what it answers: the command, inert, on its first line.
        echo = reply["text"].split("\n")[0]
        assert echo.startswith("`/rollback ") and echo.endswith("`"), reply
        assert text.split()[0] in echo or len(text) > 100, reply
        assert reply["response_type"] == "ephemeral"
        assert len(reply["text"]) < 1500
    usage_replies = [body["text"] for _, body in bot.fake.responses if "Usage:" in body["text"]]
    assert len(usage_replies) == 7  # every parse error shows the usage
    assert cards(bot.fake) == []
    assert await bot.store.find() == []
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.4")


async def test_list_status_help_and_cancel_by_command(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    _before, bot = await deploy(start_rollbot, compose_container)

    await bot.slack.command("list backend", user=REQUESTER, channel=CHANNEL)
    listing = await bot.fake.wait_for(
        lambda: "Versions of" in (t := ephemeral_text(bot.fake)) and t
    )
    assert listing.startswith("`/rollback list backend`\n*Versions of backend/production*")
    assert "`v1.2.4`" in listing and "(running)" in listing
    assert "`v1.2.3`" in listing and "(previous stable)" in listing
    assert listing.index("v1.2.4") < listing.index("v1.2.3") < listing.index("v1.2.2")

    await bot.slack.command("help", user=REQUESTER, channel=CHANNEL)
    await bot.fake.wait_for(lambda: "/rollback list SERVICE" in ephemeral_text(bot.fake))
    assert bot.fake.responses[-1][1]["text"].startswith("`/rollback help`\n")
    # An empty command is asked for the help, not met with silence.
    await bot.slack.command("", user=REQUESTER, channel=CHANNEL)
    empty = await bot.fake.wait_for(
        lambda: (
            bot.fake.responses[-1][1]["text"].startswith("`/rollback`\n")
            and bot.fake.responses[-1][1]["text"]
        )
    )
    assert "/rollback list SERVICE" in empty

    card = await request_card(bot, "backend")  # no version: the previous stable one
    assert "`v1.2.3`" in text_of(card)
    (rb,) = await bot.store.find()
    assert rb.target_version == "v1.2.3"

    await bot.slack.command("status", user=REQUESTER, channel=CHANNEL)
    await bot.fake.wait_for(lambda: f"`{rb.id}` backend/production" in ephemeral_text(bot.fake))

    await bot.slack.command(f"cancel {rb.id}", user="U_STRANGER", channel=CHANNEL)
    await bot.fake.wait_for(lambda: "Only the requester or an approver" in ephemeral_text(bot.fake))
    await bot.slack.command(f"cancel {rb.id}", user=REQUESTER, channel=CHANNEL)
    await wait_card(bot, card, lambda m: "cancelled" in text_of(m))
    assert not has_action(bot.fake.message(card["channel"], card["ts"]), ActionId.CONFIRM_SEVERITY)


async def test_group_member_approves_and_health_and_metrics_answer(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    before, bot = await deploy(start_rollbot, compose_container)
    bot.fake.usergroups["S_ONCALL"] = ["U_ONCALL"]
    card = await request_card(bot, "backend v1.2.3")
    await confirm(bot, card, "critical_bug")
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    # Slack rate-limits one reply: it is sent again after Retry-After, and counted.
    bot.fake.fail_next("chat.postMessage")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user="U_ONCALL")
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.3")

    async with httpx.AsyncClient(base_url=bot.url) as client:
        health = await client.get("/readyz")
        metrics = await client.get("/metrics")
    assert health.json() == {"status": "ok", "store": "ok", "slack": "ok"}
    assert metrics.status_code == 200
    lines = metrics.text.splitlines()
    assert 'rollbot_rollbacks{state="succeeded"} 1.0' in lines
    assert 'rollbot_rollbacks{state="running"} 0.0' in lines
    assert 'rollbot_transitions_total{from_state="verifying",to_state="succeeded"} 1.0' in lines
    assert "rollbot_locks_held 0.0" in lines  # released after the run
    finished = 'outcome="succeeded",provider="docker_compose"'
    assert f'rollbot_rollbacks_finished_total{{{finished},severity="critical"}} 1.0' in lines
    assert f"rollbot_rollback_duration_seconds_count{{{finished}}} 1.0" in lines
    step = 'kind="docker_compose",status="done"'
    assert f"rollbot_step_duration_seconds_count{{{step}}} 1.0" in lines
    (rb,) = await bot.store.find()
    (ran,) = rb.steps
    assert ran.started_at is not None and ran.finished_at is not None
    assert ran.started_at <= ran.finished_at
    assert 'rollbot_time_to_recovery_seconds_count{provider="docker_compose"} 1.0' in lines
    assert "rollbot_approval_wait_seconds_count 1.0" in lines
    assert "rollbot_rollbacks_in_flight 0.0" in lines
    assert 'rollbot_slack_api_failures_total{method="chat.postMessage",reason="429"} 1.0' in lines
    thread = thread_text(bot.fake, card)
    assert "Approved by <@U_ONCALL>" in thread and f"Approved by <@{APPROVER}>" not in thread


async def test_an_unapproved_request_expires_and_frees_the_service(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(container.project, container.port, expires_after_minutes=0.02)
    config["runtime"]["sweep_interval_seconds"] = 0.3
    bot = await start_rollbot(config)
    card = await request_card(bot, "backend v1.2.3")
    card = await wait_card(bot, card, lambda m: "expired" in text_of(m))
    assert not has_action(card, ActionId.CONFIRM_SEVERITY)
    await bot.fake.wait_for(lambda: "Expired without approval" in thread_text(bot.fake, card))
    second = await request_card(bot, "backend v1.2.3")  # the service is free again
    assert second["ts"] != card["ts"]


async def test_a_token_slack_refuses_makes_the_replica_unready_but_alive(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    _, bot = await deploy(start_rollbot, compose_container)
    bot.fake.fail_next("auth.test", "token_revoked", status=200)

    async with httpx.AsyncClient(base_url=bot.url) as client:
        ready = await client.get("/readyz")
        alive = await client.get("/healthz")

    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "store": "ok",
        "slack": "Slack refused the bot token (token_revoked)",
    }
    assert alive.status_code == 200
