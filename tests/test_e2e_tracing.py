"""End to end: every log line of a rollback names it and its trace; spans reach a collector."""

from __future__ import annotations

import json
import re
from typing import Any

from handlers.ids import ActionId
from tests.e2e_helpers import APPROVER, ready_to_approve, service_config, thread_text
from tests.support.bot import RunningBot, StartBot
from tests.support.otlp import OtlpReceiver
from tests.support.services import HttpServerFactory
from tests.support.vercel import FakeVercel

TRACE_ID = re.compile(r"[0-9a-f]{32}")


def log_lines(bot: RunningBot) -> list[dict[str, Any]]:
    """Return the bot's JSON log lines."""
    lines = []
    for line in bot.log().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


async def rolled_back(
    start_rollbot: StartBot,
    vercel: FakeVercel,
    http_server: HttpServerFactory,
    extra_env: dict[str, str] | None = None,
) -> tuple[RunningBot, str]:
    """Request, confirm and approve a rollback of the frontend; return the bot and its id."""
    site = await http_server(200, "<html>frontend</html>")
    config = service_config("frontend", vercel.settings(), site.url)
    bot = await start_rollbot(config, extra_env={"VERCEL_TOKEN": vercel.token, **(extra_env or {})})
    card = await ready_to_approve(bot, "frontend v1.2.3", "critical_bug")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    (rb,) = await bot.store.find()
    return bot, rb.id


def request_trace(lines: list[dict[str, Any]], **fields: str) -> str:
    """Return the one trace id of the log lines of the Slack request `fields` name."""
    found = {
        line["trace_id"]
        for line in lines
        if all(line.get(k) == v for k, v in fields.items()) and "trace_id" in line
    }
    assert len(found) == 1, (fields, found)
    return found.pop()


async def test_provider_calls_log_the_rollback_and_the_trace_of_its_approval(
    start_rollbot: StartBot, vercel: FakeVercel, http_server: HttpServerFactory
) -> None:
    bot, rollback_id = await rolled_back(start_rollbot, vercel, http_server)
    lines = log_lines(bot)

    # What the provider logs itself, what it reports as progress, and the call's outcome.
    calls = [line for line in lines if line.get("provider") == "vercel"]
    events = [line["event"] for line in calls]
    assert "vercel.rollback" in events and events[-1] == "provider call finished"
    assert any("alias job (rollback): succeeded" in line.get("text", "") for line in calls)
    assert {line["rollback_id"] for line in calls} == {rollback_id}
    assert {line["step"] for line in calls} == {1}
    (trace_id,) = {line["trace_id"] for line in calls}
    assert TRACE_ID.fullmatch(trace_id)

    # The run goes on in the trace of the click that approved it; each request has its own.
    approved = request_trace(lines, slack_action=ActionId.APPROVE.value)
    requested = request_trace(lines, slack_command="/rollback")
    confirmed = request_trace(lines, slack_action=ActionId.CONFIRM_SEVERITY.value)
    assert trace_id == approved
    assert len({requested, confirmed, approved}) == 3
    # The run's lines point back to the request that asked for the rollback.
    assert {line.get("requested_trace_id") for line in calls} == {requested}
    (rb,) = await bot.store.find()
    assert rb.trace_id == requested


async def test_spans_of_the_request_and_the_run_reach_an_otlp_collector(
    start_rollbot: StartBot,
    vercel: FakeVercel,
    http_server: HttpServerFactory,
    otlp_receiver: OtlpReceiver,
) -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.url}
    bot, rollback_id = await rolled_back(start_rollbot, vercel, http_server, endpoint)
    await bot.stop()  # a stopping bot sends the spans it holds
    lines = log_lines(bot)

    assert any(line["event"] == "opentelemetry tracing on" for line in lines)
    (run,) = otlp_receiver.named("rollback run")
    assert run.attributes["rollback.id"] == rollback_id
    assert run.attributes["rollback.service"] == "frontend"
    assert run.service == "rollbot"
    (approve,) = otlp_receiver.named(f"slack action {ActionId.APPROVE.value}")
    assert run.parent_span_id == approve.span_id and run.trace_id == approve.trace_id
    (step,) = otlp_receiver.named("rollback step")
    assert step.parent_span_id == run.span_id
    assert step.attributes["rollback.provider"] == "vercel"
    assert step.attributes["rollback.id"] == rollback_id

    calls = [line for line in lines if line.get("provider") == "vercel"]
    assert calls and {line["trace_id"] for line in calls} == {run.trace_id}
    (command,) = otlp_receiver.named("slack command /rollback")
    assert command.trace_id == request_trace(lines, slack_command="/rollback")
    assert command.trace_id != run.trace_id
