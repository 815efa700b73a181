"""The fake Slack answers the real slack_sdk client, and its requests pass slack_sdk's checks."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    CheckboxesElement,
    Option,
    SectionBlock,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.support.slack import FakeSlack, SignedSlack, text_of

SECRET = "test-signing-secret"


@dataclass
class BotStub:
    """An endpoint that records what Slack would deliver to the bot and answers `reply`."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    reply: str = ""

    def payload(self, index: int = -1) -> dict:
        """The JSON `payload` field of a received interactivity request."""
        form = urllib.parse.parse_qs(self.received[index][1].decode())
        return json.loads(form["payload"][0])


@pytest.fixture
async def bot_stub() -> AsyncIterator[BotStub]:
    """A started BotStub."""
    stub = BotStub()

    async def receive(request: web.Request) -> web.Response:
        stub.received.append((dict(request.headers), await request.read()))
        return web.Response(text=stub.reply, content_type="application/json")

    app = web.Application()
    app.router.add_post("/slack/events", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stub.url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    yield stub
    await runner.cleanup()


@pytest.fixture
def client(fake_slack: FakeSlack) -> AsyncWebClient:
    """The real slack_sdk client, pointed at the fake."""
    return AsyncWebClient(token="xoxb-test", base_url=fake_slack.base_url)


def card(label: str) -> list[dict]:
    """A small card with a section, a button and a select."""
    return [
        SectionBlock(block_id="head", text=f"*{label}*").to_dict(),
        ActionsBlock(
            block_id="act",
            elements=[
                ButtonElement(text="Approve", action_id="approve", value="rb-1", style="primary"),
                {
                    "type": "static_select",
                    "action_id": "target",
                    "placeholder": {"type": "plain_text", "text": "Version"},
                    "options": [
                        {"text": {"type": "plain_text", "text": v}, "value": v}
                        for v in ("v1", "v2")
                    ],
                },
            ],
        ).to_dict(),
    ]


async def test_update_replaces_blocks_of_posted_message(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel="C_OPS", text="rollback", blocks=card("asked"))
    assert posted["ts"] == "1700000000.000100"

    await client.chat_update(
        channel="C_OPS", ts=posted["ts"], text="rollback approved", blocks=card("approved")
    )

    shown = fake_slack.message("C_OPS", posted["ts"])
    assert shown["blocks"][0]["text"]["text"] == "*approved*"
    assert shown["text"] == "rollback approved"
    assert "approved" in text_of(shown)
    assert [c.method for c in fake_slack.calls] == ["chat.postMessage", "chat.update"]
    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel="C_OPS", ts="1.2", text="x")
    assert missing.value.response["error"] == "message_not_found"


async def test_errors_come_back_like_slack(fake_slack: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as unknown:
        await client.api_call("rollbacks.perform")
    assert unknown.value.response.status_code == 200
    assert unknown.value.response["error"] == "unknown_method"

    with pytest.raises(SlackApiError) as anonymous:
        await AsyncWebClient(base_url=fake_slack.base_url).auth_test()
    assert anonymous.value.response["error"] == "not_authed"

    too_many = [{"type": "divider"}] * 51
    with pytest.raises(SlackApiError) as invalid:
        await client.chat_postMessage(channel="C_OPS", text="x", blocks=too_many)
    assert invalid.value.response["error"] == "invalid_blocks"


async def test_usergroup_members(fake_slack: FakeSlack, client: AsyncWebClient) -> None:
    fake_slack.usergroups["S_SRE"] = ["U1", "U2"]

    found = await client.usergroups_users_list(usergroup="S_SRE")

    assert found["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError) as missing:
        await client.usergroups_users_list(usergroup="S_NONE")
    assert missing.value.response["error"] == "no_such_subteam"


async def test_rate_limit_is_retried_after_retry_after(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    fake_slack.fail_next("chat.postMessage", retry_after=1)

    await client.chat_postMessage(channel="C_OPS", text="hello")

    first, second = fake_slack.calls_of("chat.postMessage")
    assert (first.status, second.status) == (429, 200)
    assert second.time - first.time >= 1.0
    assert [m["text"] for m in fake_slack.messages("C_OPS")] == ["hello"]


async def test_signature_is_slacks_and_stale_or_forged_ones_are_not(
    fake_slack: FakeSlack, bot_stub: BotStub
) -> None:
    slack = SignedSlack(bot_stub.url, SECRET, fake_slack)
    verifier = SignatureVerifier(SECRET)
    fields = slack.command_fields("status checkout")

    await slack.command("status checkout")
    await slack.send(fields, timestamp=int(time.time()) - 6 * 60)
    await slack.send(fields, secret="not-the-secret")

    (good_headers, good), (stale_headers, stale), (forged_headers, forged) = bot_stub.received
    assert verifier.is_valid_request(good, good_headers)
    assert not verifier.is_valid_request(stale, stale_headers)
    assert not verifier.is_valid_request(forged, forged_headers)
    form = urllib.parse.parse_qs(good.decode())
    assert form["command"] == ["/rollback"] and form["text"] == ["status checkout"]
    assert form["response_url"][0].startswith(fake_slack.url)


async def test_click_carries_the_shown_message_and_selection(
    fake_slack: FakeSlack, client: AsyncWebClient, bot_stub: BotStub
) -> None:
    slack = SignedSlack(bot_stub.url, SECRET, fake_slack)
    ts = (await client.chat_postMessage(channel="C_OPS", text="x", blocks=card("asked")))["ts"]

    await slack.select("C_OPS", ts, "target", "v2", user="U_APP")
    await slack.click("C_OPS", ts, "approve", user="U_APP")

    payload = bot_stub.payload()
    assert payload["type"] == "block_actions"
    assert payload["actions"][0] == payload["actions"][0] | {
        "action_id": "approve",
        "value": "rb-1",
    }
    assert payload["container"] == {
        "type": "message",
        "message_ts": ts,
        "channel_id": "C_OPS",
        "is_ephemeral": False,
    }
    assert payload["message"]["blocks"] == fake_slack.message("C_OPS", ts)["blocks"]
    assert payload["state"]["values"]["act"]["target"]["selected_option"]["value"] == "v2"
    with pytest.raises(AssertionError, match="shows no 'reject'"):
        await slack.click("C_OPS", ts, "reject", user="U_APP")
    with pytest.raises(AssertionError, match="no option 'v9'"):
        await slack.select("C_OPS", ts, "target", "v9", user="U_APP")

    webhook = AsyncWebhookClient(payload["response_url"])
    await webhook.send(text="done", replace_original=True, blocks=card("done"))
    assert fake_slack.message("C_OPS", ts)["blocks"][0]["text"]["text"] == "*done*"


async def test_modal_opens_with_a_fresh_trigger_and_submits(
    fake_slack: FakeSlack, client: AsyncWebClient, bot_stub: BotStub
) -> None:
    slack = SignedSlack(bot_stub.url, SECRET, fake_slack)
    view = {
        "type": "modal",
        "callback_id": "reason",
        "private_metadata": "rb-1",
        "title": {"type": "plain_text", "text": "Rollback"},
        "submit": {"type": "plain_text", "text": "Go"},
        "blocks": [
            {
                "type": "input",
                "block_id": "why",
                "label": {"type": "plain_text", "text": "Why?"},
                "element": {"type": "plain_text_input", "action_id": "text"},
            }
        ],
    }
    with pytest.raises(SlackApiError) as stale:
        await client.views_open(trigger_id="123.456.abc", view=view)
    assert stale.value.response["error"] == "invalid_trigger_id"
    opened = await client.views_open(trigger_id=fake_slack.new_trigger_id(), view=view)

    await slack.submit_view("reason", {"why": {"text": "bad deploy"}}, user="U_REQ")

    submitted = bot_stub.payload()["view"]
    assert submitted["id"] == opened["view"]["id"]
    assert (submitted["callback_id"], submitted["private_metadata"]) == ("reason", "rb-1")
    assert submitted["state"]["values"]["why"]["text"] == {
        "type": "plain_text_input",
        "value": "bad deploy",
    }
    with pytest.raises(AssertionError, match="closed"):
        await slack.submit_view("reason", {"why": {"text": "again"}}, user="U_REQ")


async def test_checkbox_click_carries_every_ticked_box(
    fake_slack: FakeSlack, client: AsyncWebClient, bot_stub: BotStub
) -> None:
    slack = SignedSlack(bot_stub.url, SECRET, fake_slack)
    boxes = CheckboxesElement(
        action_id="tick",
        options=[Option(value=v, label=v.upper()) for v in ("a", "b", "c")],
        initial_options=[Option(value="a", label="A")],
    )
    blocks = [ActionsBlock(block_id="list", elements=[boxes]).to_dict()]
    ts = (await client.chat_postMessage(channel="C_OPS", text="x", blocks=blocks))["ts"]

    await slack.toggle_checkbox("C_OPS", ts, "tick", "c", user="U_REQ")
    await slack.toggle_checkbox("C_OPS", ts, "tick", "a", user="U_REQ")

    first, second = (bot_stub.payload(i) for i in (0, 1))
    assert first["actions"][0]["type"] == "checkboxes"
    assert [o["value"] for o in first["actions"][0]["selected_options"]] == ["a", "c"]
    action = second["actions"][0]
    assert (action["action_id"], action["block_id"]) == ("tick", "list")
    assert [o["value"] for o in action["selected_options"]] == ["c"]
    state = second["state"]["values"]["list"]["tick"]
    assert state["type"] == "checkboxes" and state["selected_options"] == action["selected_options"]
    with pytest.raises(AssertionError, match="no 'tick' box 'z'"):
        await slack.toggle_checkbox("C_OPS", ts, "tick", "z", user="U_REQ")
