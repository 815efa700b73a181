"""Socket Mode end to end: `rollbot serve` with an app token, envelopes over a websocket."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.models import State
from handlers.ids import REASON_INPUT, ActionId, BlockId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    backend_config,
    cards,
    has_action,
    thread_text,
)
from tests.support.bot import APP_TOKEN, ROLLBOT, RunningBot, StartBot, bot_environment
from tests.support.docker import ComposeContainerFactory, unique_project, wait_http
from tests.support.slack import APP_ID, FakeSlack, SocketSlack, text_of
from tests.test_e2e_rollback import confirm, request_card, running_image, wait_card
from tests.test_e2e_tracing import log_lines, request_trace


def assert_all_acked(bot: RunningBot) -> None:
    """Every envelope the fake sent was acked; interactions with a plain ack, before the work.

    A slash command may carry its answer in the ack (help, a command that does not parse).
    """
    fake = bot.fake
    assert fake.envelopes, "no envelope was sent"
    assert fake.unacked() == [], f"envelopes never acked: {fake.unacked()}\n{fake.dump()}"
    for envelope in fake.envelopes:
        ack = fake.acks[envelope["envelope_id"]]
        if envelope["type"] != "slash_commands":
            assert ack.get("payload") in (None, {}), (envelope["type"], ack)


@asynccontextmanager
async def socket_bot_process(
    fake: FakeSlack, tmp_path: Path, config: dict[str, Any]
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`rollbot serve` in Socket Mode, not waited for: for start-ups that cannot connect."""
    config_path = tmp_path / "rollbot.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = bot_environment(config_path, tmp_path / "rollbot.db", fake)
    del env["SLACK_SIGNING_SECRET"]
    env["SLACK_APP_TOKEN"] = APP_TOKEN
    log_path = tmp_path / "rollbot.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(ROLLBOT), "serve"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        await asyncio.to_thread(process.wait, 15)
        assert APP_TOKEN not in log_path.read_text(errors="replace")


async def exit_code(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The process's exit code once it ends, or None if it still runs after `timeout` s."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return process.poll()


async def test_fake_socket_mode_speaks_to_slack_sdks_client(fake_slack: FakeSlack) -> None:
    web = AsyncWebClient(base_url=fake_slack.base_url)
    with pytest.raises(SlackApiError) as bot_token:
        await web.apps_connections_open(app_token="xoxb-a-bot-token")
    assert bot_token.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as anonymous:
        await web.api_call("apps.connections.open")
    assert anonymous.value.response["error"] == "not_authed"

    messages: list[dict[str, Any]] = []

    async def on_message(_: Any, message: dict[str, Any], raw: str | None) -> None:
        messages.append(message)

    async def on_request(client: Any, request: SocketModeRequest) -> None:
        if request.payload.get("text") != "stay silent":
            answer = SocketModeResponse(envelope_id=request.envelope_id, payload={"text": "ok"})
            await client.send_socket_mode_response(answer)

    client = SocketModeClient(app_token="xapp-1-test", web_client=web)
    client.message_listeners.append(on_message)
    client.socket_mode_request_listeners.append(on_request)
    try:
        await client.connect()
        await fake_slack.wait_connected(5)
        ack = await fake_slack.push_envelope("slash_commands", {"text": "hi"})
        with pytest.raises(AssertionError, match="did not ack slash_commands envelope"):
            await fake_slack.push_envelope("slash_commands", {"text": "stay silent"}, timeout=0.5)
    finally:
        await client.close()

    hello = messages[0]
    assert hello["type"] == "hello" and hello["num_connections"] == 1
    assert hello["connection_info"] == {"app_id": APP_ID}
    first, silent = fake_slack.envelopes
    assert ack == {"envelope_id": first["envelope_id"], "payload": {"text": "ok"}}
    assert first["accepts_response_payload"] is True
    assert fake_slack.unacked() == [silent]
    url = fake_slack.calls_of("apps.connections.open")[-1].response["url"]
    assert url.startswith("ws://127.0.0.1:")
    assert "token" not in fake_slack.calls_of("apps.connections.open")[-1].args


async def test_full_rollback_over_socket_mode(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    project = unique_project()
    before = await compose_container(project, "backend", "v1.2.4")
    bot = await start_rollbot(backend_config(project, before.port), socket=True)
    fake = bot.fake
    assert isinstance(bot.slack, SocketSlack)
    assert bot.url == ""  # no HTTP server in Socket Mode

    card = await request_card(bot, "backend v1.2.3")
    assert "v1.2.4" in text_of(card) and "v1.2.3" in text_of(card)
    await confirm(bot, card, "critical_bug")
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await fake.wait_for(lambda: "[RESOLVED]" in thread_text(fake, card))

    assert [e["type"] for e in fake.envelopes] == [
        "slash_commands",
        "interactive",
        "interactive",
        "interactive",
    ]
    assert fake.envelopes[0]["payload"]["text"] == "backend v1.2.3"
    assert [e["payload"]["actions"][0]["action_id"] for e in fake.envelopes[1:]] == [
        ActionId.ISSUE_SELECT,
        ActionId.CONFIRM_SEVERITY,
        ActionId.APPROVE,
    ]
    assert_all_acked(bot)
    image, _ = await running_image(docker_host, project)
    assert image.endswith(":v1.2.3")
    assert '"version":"v1.2.3"' in await wait_http(f"{before.url}/health")
    (rb,) = await bot.store.find()
    assert (rb.state, rb.requested_by) == (State.SUCCEEDED, REQUESTER)
    # One to check the app token at start-up, one for the connection itself.
    assert len(fake.calls_of("apps.connections.open")) == 2
    # Over Socket Mode too, the run's provider calls log the approval's trace.
    calls = [line for line in log_lines(bot) if line.get("provider") == "docker_compose"]
    assert calls and {line["rollback_id"] for line in calls} == {rb.id}
    approved = request_trace(log_lines(bot), slack_action=ActionId.APPROVE.value)
    assert {line["trace_id"] for line in calls} == {approved}


async def test_bad_command_gets_its_error_in_the_ack(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    project = unique_project()
    before = await compose_container(project, "backend", "v1.2.4")
    bot = await start_rollbot(backend_config(project, before.port), socket=True)
    fake = bot.fake

    status, _ = await bot.slack.command("backend v1;rm", user=REQUESTER, channel=CHANNEL)

    assert status == 200
    token, reply = await fake.wait_for(lambda: fake.responses and fake.responses[-1])
    assert fake.response_url_for(token) == fake.envelopes[0]["payload"]["response_url"]
    assert "'v1;rm' is not a valid version" in reply["text"]
    assert "Usage:" in reply["text"]
    assert reply["response_type"] == "ephemeral"
    assert [e["text"] for e in fake.ephemerals_for(REQUESTER)] == [reply["text"]]
    # Answered in the ack itself, which Slack shows the user: nothing follows it.
    (envelope,) = fake.envelopes
    assert fake.acks[envelope["envelope_id"]]["payload"] == reply
    assert len(fake.responses) == 1
    assert cards(fake) == []
    assert await bot.store.find() == []
    image, _ = await running_image(docker_host, project)
    assert image.endswith(":v1.2.4")


async def test_bot_reconnects_when_slack_refreshes_the_connection(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    project = unique_project()
    before = await compose_container(project, "backend", "v1.2.4")
    bot = await start_rollbot(backend_config(project, before.port), socket=True)
    fake = bot.fake

    await fake.disconnect("refresh_requested")
    await fake.wait_connected(15, opened=2)
    await fake.wait_for(lambda: fake.open_connections == 1)

    await bot.slack.command("help", user=REQUESTER, channel=CHANNEL)
    reply = await fake.wait_for(lambda: fake.responses and fake.responses[-1][1])
    assert "/rollback help" in reply["text"] and "Services: backend" in reply["text"]
    assert len(fake.calls_of("apps.connections.open")) == 3  # token check, connect, reconnect
    assert_all_acked(bot)


async def test_reason_modal_errors_ride_on_the_ack(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    project = unique_project()
    before = await compose_container(project, "backend", "v1.2.4")
    bot = await start_rollbot(backend_config(project, before.port), socket=True)
    card = await request_card(bot, "backend v1.2.3")
    await confirm(bot, card, "minor_ui_bug")  # fix-forward: an override needs a reason
    view = await bot.fake.wait_for(lambda: bot.fake.views and next(iter(bot.fake.views.values())))

    _, too_short = await bot.slack.submit_view(
        view["id"], {BlockId.REASON: {REASON_INPUT: "no"}}, user=REQUESTER
    )
    assert too_short
    assert '"response_action": "errors"' in too_short
    assert bot.fake.find_view(view["id"])  # Slack keeps the modal open and shows the error
    _, accepted = await bot.slack.submit_view(
        view["id"], {BlockId.REASON: {REASON_INPUT: "UI bug blocks checkout"}}, user=REQUESTER
    )
    assert accepted == ""
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    assert "overridden" in text_of(card)
    (rb,) = await bot.store.find()
    assert rb.override_reason == "UI bug blocks checkout"
    assert bot.fake.unacked() == []


async def test_sigterm_stops_the_bot_while_slack_is_unreachable(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    fake_slack.fail_next("apps.connections.open", "service_unavailable", status=503, times=100)
    async with socket_bot_process(fake_slack, tmp_path, backend_config("absent", 1)) as process:
        await fake_slack.wait_for(lambda: fake_slack.calls_of("apps.connections.open"))
        await asyncio.sleep(0.5)
        assert process.poll() is None, "a Slack outage (503) is transient: retry, do not exit"
        process.send_signal(signal.SIGTERM)
        code = await exit_code(process, timeout=5)
    assert code is not None, (
        "rollbot ignored SIGTERM while it could not reach Slack: handlers/server.py awaits "
        "handler.connect_async(), which slack_sdk retries forever (every 10 s), before it "
        "waits on the stop event the signal handler sets; only SIGKILL stops it"
    )
    assert code == 0, f"rollbot exited with {code} on SIGTERM"


async def test_app_token_slack_refuses_is_a_start_up_error(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    fake_slack.fail_next("apps.connections.open", "invalid_auth", status=200, times=100)
    async with socket_bot_process(fake_slack, tmp_path, backend_config("absent", 1)) as process:
        code = await exit_code(process, timeout=8)
        log = (tmp_path / "rollbot.log").read_text()
    assert code not in (None, 0), (
        "rollbot kept running with an app token Slack refuses (invalid_auth): slack_sdk's "
        "SocketModeClient.connect() retries it every 10 s forever, so handlers/server.py's "
        "connect_async() never returns and the bot looks up but receives nothing.\n"
        f"log (end):\n{log[-1500:]}"
    )
    assert "SLACK_APP_TOKEN" in log and "invalid_auth" in log
