"""End to end: what people type stays inert and secrets never reach Slack or the log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from handlers.ids import REASON_INPUT, ActionId, BlockId
from tests.e2e_helpers import (
    APPROVER,
    REQUESTER,
    confirm,
    deploy,
    has_action,
    leaky_backend,
    request_card,
    thread_text,
    wait_card,
)
from tests.support.bot import RunningBot, StartBot
from tests.support.docker import (
    CACHE_PASSWORD,
    LEAKY_DSN,
    LEAKY_PASSWORD,
    ComposeContainerFactory,
)
from tests.support.slack import text_of

FORGED = "oops <!channel> @here <@U_OTHER>\n*Status*\n:white_check_mark: succeeded"


def strings(node: Any) -> Iterator[str]:
    """Yield every string inside a JSON value."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def sent(bot: RunningBot) -> list[str]:
    """Return every text rollbot sent to Slack: messages, updates, views and file contents."""
    texts = [text for call in bot.fake.calls for text in strings(call.args)]
    return texts + [str(upload.get("content", "")) for upload in bot.fake.uploads()]


async def test_a_typed_reason_is_shown_inert_on_the_card_and_in_the_thread(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    _before, bot = await deploy(start_rollbot, compose_container)
    card = await request_card(bot, "backend v1.2.3")
    await confirm(bot, card, "minor_ui_bug")
    view = await bot.fake.wait_for(lambda: bot.fake.views and next(iter(bot.fake.views.values())))
    await bot.slack.submit_view(
        view["id"], {BlockId.REASON: {REASON_INPUT: FORGED}}, user=REQUESTER
    )

    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    quoted = "oops &lt;!channel&gt; @\u200dhere &lt;@U_OTHER&gt; ∗Status∗ :white_check_mark:"
    assert f"*Fix-forward overridden:* {quoted}" in text_of(card)
    await bot.fake.wait_for(lambda: quoted in thread_text(bot.fake, card))
    for text in sent(bot):
        assert "<!channel>" not in text and "<@U_OTHER>" not in text and "@here" not in text
        assert "\n*Status*" not in text and "\n:white_check_mark: succeeded" not in text


async def test_a_failing_container_log_reaches_the_thread_redacted(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    config = await leaky_backend(compose_container)
    bot = await start_rollbot(config, {"DATABASE_URL": LEAKY_DSN})

    card = await request_card(bot, "backend v1.2.3")
    await confirm(bot, card, "critical_bug")
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "Last log lines" in thread_text(bot.fake, card))
    await bot.fake.wait_for(lambda: bot.fake.uploads())  # the incident report

    thread = thread_text(bot.fake, card)
    assert "DATABASE_URL=[redacted]" in thread
    assert "password [redacted] rejected, trying postgresql://[redacted]@replica/x" in thread
    assert "cache at redis://[redacted]@cache:6379 is down" in thread
    assert "failed" in text_of(bot.fake.message(card["channel"], card["ts"]))
    for secret in (LEAKY_PASSWORD, CACHE_PASSWORD):
        assert all(secret not in text for text in sent(bot))
        assert secret not in bot.log()
