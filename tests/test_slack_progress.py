"""Progress is one thread reply, edited at a pace Slack allows, never a reply per line."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import parse_config
from bot.engine import Engine
from bot.models import Rollback
from bot.pool import ProviderPool
from bot.settings import Settings
from bot.store.sqlite import SQLiteStore
from handlers.app import web_client
from handlers.progress import PROGRESS_EDIT_SECONDS, render
from handlers.thread import SlackThread
from tests.e2e_helpers import REQUESTER, backend_config
from tests.support.docker import ComposeContainer, ComposeContainerFactory, unique_project
from tests.support.slack import FakeSlack, text_of

LINES = 30


@pytest.fixture
async def engine(
    tmp_path: Path, compose_container: ComposeContainerFactory
) -> AsyncIterator[Engine]:
    """An engine on a real store, for a compose service that really runs."""
    backend: ComposeContainer = await compose_container(unique_project(), "backend", "v1.2.4")
    config = parse_config(backend_config(backend.project, backend.port))
    async with SQLiteStore(str(tmp_path / "rollbot.db")) as store:
        engine = Engine(config, store, ProviderPool(config))
        try:
            yield engine
        finally:
            await engine.providers.aclose()


async def carded(engine: Engine, fake: FakeSlack) -> tuple[SlackThread, Rollback]:
    """The bot's own Slack client and thread, and a requested rollback with its card."""
    settings = Settings(SLACK_BOT_TOKEN=SecretStr("xoxb-test"), SLACK_API_URL=fake.base_url)
    thread = SlackThread(web_client(settings), engine)
    rb = await engine.request(service="backend", version="v1.2.3", environment=None, user=REQUESTER)
    return thread, await thread.post_card(rb, "C_OPS")


def progress_replies(fake: FakeSlack, rb: Rollback) -> list[str]:
    """The thread replies that show progress, as the thread shows them now."""
    assert rb.channel_id and rb.thread_ts
    replies = [text_of(m) for m in fake.thread(rb.channel_id, rb.thread_ts)]
    return [r for r in replies if r.startswith(":gear:")]


async def test_thirty_lines_make_one_reply_edited_a_few_times(
    engine: Engine, fake_slack: FakeSlack
) -> None:
    fake_slack.rate_limits.enable()
    thread, rb = await carded(engine, fake_slack)
    before = len(fake_slack.calls)

    reporting = 0.0
    for n in range(LINES):
        started = time.monotonic()
        await thread.progress(rb, f"poll {n}: 1/3 tasks running")
        reporting += time.monotonic() - started
        await asyncio.sleep(0.1)
    await thread.outbox.flush(within=2 * PROGRESS_EDIT_SECONDS + 5)

    # The work never waited on Slack.
    assert reporting < 0.5
    (reply,) = progress_replies(fake_slack, rb)
    assert [line.removeprefix(":gear: ") for line in reply.splitlines()] == [
        f"poll {n}: 1/3 tasks running" for n in range(LINES)
    ]
    # One post, then an edit (and a card redraw) at most every few seconds.
    chat = [c for c in fake_slack.calls[before:] if c.method.startswith("chat.")]
    assert len([c for c in chat if c.method == "chat.postMessage"]) == 1
    assert len(chat) <= 2 * (LINES * 0.1 / PROGRESS_EDIT_SECONDS + 2)
    assert all(c.status == 200 for c in chat), fake_slack.dump()
    # The card shows the last step.
    assert rb.channel_id and rb.message_ts
    assert "poll 29" in text_of(fake_slack.message(rb.channel_id, rb.message_ts))
    # The audit log is the engine's: the thread only shows.
    await thread.finished(rb, "done")
    await thread.outbox.flush(within=10)
    assert len(progress_replies(fake_slack, rb)) == 1


async def test_a_rate_limited_edit_is_retried_and_the_last_state_lands_before_the_outcome(
    engine: Engine, fake_slack: FakeSlack
) -> None:
    thread, rb = await carded(engine, fake_slack)
    await thread.progress(rb, "step 1")
    await thread.outbox.flush(within=5)
    fake_slack.fail_next("chat.update", retry_after=1, times=2)

    started = time.monotonic()
    for n in range(2, 6):
        await thread.progress(rb, f"step {n}")
    await thread.finished(rb, "The rollback finished.")
    assert time.monotonic() - started < 0.5

    assert rb.channel_id and rb.thread_ts
    await fake_slack.wait_for(
        lambda: any("The rollback finished." in text_of(m) for m in fake_slack.messages()),
        timeout=15,
    )
    (reply,) = progress_replies(fake_slack, rb)
    assert reply.splitlines()[-1] == ":gear: step 5"
    texts = [text_of(m) for m in fake_slack.thread(rb.channel_id, rb.thread_ts)]
    assert texts.index(reply) < next(i for i, t in enumerate(texts) if "finished" in t)


def test_a_long_run_keeps_its_first_and_latest_lines_and_says_what_it_left_out() -> None:
    lines = [f"poll {n}: " + "x" * 200 for n in range(100)]

    text = render(lines)

    assert len(text) <= 3_500
    shown = text.splitlines()
    assert shown[0].startswith(":gear: poll 0:")
    assert shown[-1].startswith(":gear: poll 99:")
    assert "more step(s) in between" in shown[1]
