"""The fake Slack refuses what Slack refuses: rate limits, missing scopes, channels, sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from playground.slack_limits import MANIFEST_SCOPES, TEXT_MAX
from tests.support.slack import BOT_USER_ID, FakeSlack

MANIFEST = Path(__file__).parents[1] / "slack-manifest.yaml"


@pytest.fixture
def client(fake_slack: FakeSlack) -> AsyncWebClient:
    """The real slack_sdk client, pointed at the fake, without retries."""
    return AsyncWebClient(token="xoxb-test", base_url=fake_slack.base_url)


async def refused(call: object) -> SlackApiError:
    """Await a Slack call that must fail, and return its error."""
    with pytest.raises(SlackApiError) as failed:
        await call  # type: ignore[misc]
    return failed.value


async def test_rate_limits_are_off_until_a_test_turns_them_on(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    for n in range(10):
        await client.chat_postMessage(channel="C_OPS", text=f"line {n}")

    assert len(fake_slack.messages("C_OPS")) == 10


async def test_post_message_is_limited_per_channel_with_a_short_burst(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    fake_slack.rate_limits.enable()
    for n in range(3):
        await client.chat_postMessage(channel="C_OPS", text=f"burst {n}")

    error = await refused(client.chat_postMessage(channel="C_OPS", text="one too many"))

    assert error.response.status_code == 429
    assert error.response["error"] == "ratelimited"
    assert int(error.response.headers["Retry-After"]) >= 1
    # Another channel has its own allowance.
    await client.chat_postMessage(channel="C_OTHER", text="elsewhere")
    assert [m["text"] for m in fake_slack.messages("C_OPS")] == [f"burst {n}" for n in range(3)]


async def test_a_method_limited_tightly_says_how_long_to_wait_and_lets_the_retry_through(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel="C_OPS", text="v1")
    fake_slack.rate_limits.set("chat.update", per_minute=60, burst=1)
    await client.chat_update(channel="C_OPS", ts=posted["ts"], text="v2")

    error = await refused(client.chat_update(channel="C_OPS", ts=posted["ts"], text="v3"))
    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "1"

    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    await client.chat_update(channel="C_OPS", ts=posted["ts"], text="v4")
    assert fake_slack.message("C_OPS", posted["ts"])["text"] == "v4"
    last, retried = fake_slack.calls_of("chat.update")[-2:]
    assert (last.status, retried.status) == (429, 200)
    assert retried.time - last.time >= 1.0


async def test_under_load_every_third_chat_call_is_answered_429_retry_after_one(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    fake_slack.rate_limits.every(3)
    posted = await client.chat_postMessage(channel="C_OPS", text="v1")
    await client.chat_update(channel="C_OPS", ts=posted["ts"], text="v2")

    error = await refused(client.chat_update(channel="C_OPS", ts=posted["ts"], text="v3"))
    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "1"
    # Other families are not counted; the retry is, and goes through.
    await client.users_info(user="U_REQ")
    for n in range(2):
        await client.chat_postMessage(channel="C_OPS", text=f"after {n}")
    assert (await refused(client.chat_postMessage(channel="C_OPS", text="x"))).response[
        "error"
    ] == "ratelimited"

    fake_slack.rate_limits.every(None)
    for n in range(6):
        await client.chat_postMessage(channel="C_OPS", text=f"calm {n}")
    statuses = [c.status for c in fake_slack.calls if c.method.startswith("chat.")]
    assert statuses == [200, 200, 429, 200, 200, 429] + [200] * 6


def test_the_default_scopes_are_the_manifests() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())

    assert set(manifest["oauth_config"]["scopes"]["bot"]) == MANIFEST_SCOPES


async def test_a_missing_scope_names_what_is_needed_and_what_the_token_has(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    fake_slack.scopes.discard("users:read")

    error = await refused(client.users_info(user="U_REQ"))

    assert error.response["error"] == "missing_scope"
    assert error.response["needed"] == "users:read"
    provided = error.response["provided"].split(",")
    assert "chat:write" in provided and "users:read" not in provided
    # Nothing else is affected.
    await client.chat_postMessage(channel="C_OPS", text="still posting")


async def test_posting_where_the_bot_is_not_a_member(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    public = fake_slack.create_channel("ops", members=("U_REQ",))
    private = fake_slack.create_channel("sre-private", members=("U_REQ",), is_private=True)

    # chat:write.public lets a bot post in public channels it never joined.
    await client.chat_postMessage(channel=public, text="public")
    assert (await refused(client.chat_postMessage(channel=private, text="x"))).response[
        "error"
    ] == "channel_not_found"

    fake_slack.scopes.discard("chat:write.public")
    error = await refused(client.chat_postMessage(channel=public, text="x"))
    assert error.response["error"] == "not_in_channel"

    joining = await refused(client.conversations_join(channel=public))
    assert (joining.response["error"], joining.response["needed"]) == (
        "missing_scope",
        "channels:join",
    )
    fake_slack.scopes.add("channels:join")
    await client.conversations_join(channel=public)
    await client.chat_postMessage(channel=public, text="after joining")
    assert BOT_USER_ID in fake_slack.members(public)
    assert [m["text"] for m in fake_slack.messages(public)] == ["public", "after joining"]
    private_join = await refused(client.conversations_join(channel=private))
    assert private_join.response["error"] == "method_not_supported_for_channel_type"


async def test_archived_and_unknown_channels(fake_slack: FakeSlack, client: AsyncWebClient) -> None:
    archived = fake_slack.create_channel("old-incident", is_archived=True)

    error = await refused(client.chat_postMessage(channel=archived, text="x"))
    assert error.response["error"] == "is_archived"

    fake_slack.strict_channels = True
    for call in (
        client.chat_postMessage(channel="C_GONE", text="x"),
        client.conversations_info(channel="C_GONE"),
    ):
        assert (await refused(call)).response["error"] == "channel_not_found"
    assert fake_slack.messages() == []


async def test_text_over_forty_thousand_characters_is_too_long(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel="C_OPS", text="x" * TEXT_MAX)

    too_long = "y" * (TEXT_MAX + 1)
    for call in (
        client.chat_postMessage(channel="C_OPS", text=too_long),
        client.chat_update(channel="C_OPS", ts=posted["ts"], text=too_long),
    ):
        assert (await refused(call)).response["error"] == "msg_too_long"
    assert fake_slack.message("C_OPS", posted["ts"])["text"] == "x" * TEXT_MAX


@pytest.mark.parametrize(
    ("block", "pointer"),
    [
        ({"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}, "/blocks/0"),
        ({"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}, "/blocks/0"),
        (
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "go",
                        "text": {"type": "plain_text", "text": "b" * 76},
                    }
                ],
            },
            "/blocks/0",
        ),
    ],
    ids=["section-text-3000", "header-150", "button-text-75"],
)
async def test_block_limits_answer_invalid_blocks_with_where(
    fake_slack: FakeSlack, client: AsyncWebClient, block: dict, pointer: str
) -> None:
    error = await refused(client.chat_postMessage(channel="C_OPS", text="x", blocks=[block]))

    assert error.response["error"] == "invalid_blocks"
    (message,) = error.response["response_metadata"]["messages"]
    assert f"[json-pointer:{pointer}]" in message
    assert fake_slack.messages() == []


async def test_fifty_blocks_a_message(fake_slack: FakeSlack, client: AsyncWebClient) -> None:
    divider = {"type": "divider"}
    await client.chat_postMessage(channel="C_OPS", text="x", blocks=[divider] * 50)

    error = await refused(client.chat_postMessage(channel="C_OPS", text="x", blocks=[divider] * 51))

    assert error.response["error"] == "invalid_blocks"
    assert len(fake_slack.messages("C_OPS")) == 1
