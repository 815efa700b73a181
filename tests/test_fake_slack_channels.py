"""The fake Slack creates channels and invites people the way Slack's methods document it."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.slack import BOT_USER_ID, FakeSlack


@pytest.fixture
def client(fake_slack: FakeSlack) -> AsyncWebClient:
    """The real slack_sdk client, pointed at the fake."""
    return AsyncWebClient(token="xoxb-test", base_url=fake_slack.base_url)


async def error_of(call: Awaitable[Any]) -> tuple[str, dict[str, Any]]:
    """Await a call that Slack refuses; return its error code and whole body."""
    with pytest.raises(SlackApiError) as caught:
        await call
    response = caught.value.response
    return str(response["error"]), {"errors": response.get("errors")}


async def test_create_validates_names_and_refuses_a_taken_one(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    created = await client.conversations_create(name="inc-20261125-backend-rb1a2b3c4d")
    channel = created["channel"]
    assert channel["name"] == "inc-20261125-backend-rb1a2b3c4d"
    assert channel["is_private"] is False and channel["creator"] == BOT_USER_ID
    assert fake_slack.members(channel["id"]) == {BOT_USER_ID}
    info = await client.conversations_info(channel=channel["id"])
    assert info["channel"]["name"] == channel["name"]

    private = await client.conversations_create(name="inc-private", is_private=True)
    assert private["channel"]["is_private"] is True

    for name, error in [
        ("inc-20261125-backend-rb1a2b3c4d", "name_taken"),
        ("Inc-Upper", "invalid_name_specials"),
        ("inc.dots", "invalid_name_specials"),
        ("x" * 81, "invalid_name_maxlength"),
        ("--", "invalid_name_punctuation"),
        ("here", "invalid_name"),
    ]:
        code, _ = await error_of(client.conversations_create(name=name))
        assert code == error, name
    assert fake_slack.channel_named("x" * 81) is None


async def test_invite_all_or_nothing_with_each_users_error(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    channel = (await client.conversations_create(name="inc-invite"))["channel"]["id"]
    answer = await client.conversations_invite(channel=channel, users=["U_A", "U_B"])
    assert answer["channel"]["id"] == channel
    assert fake_slack.members(channel) == {BOT_USER_ID, "U_A", "U_B"}

    fake_slack.users["U_GONE"] = {"deleted": True}
    code, body = await error_of(
        client.conversations_invite(channel=channel, users=["U_C", "U_A", BOT_USER_ID, "U_GONE"])
    )
    assert code == "already_in_channel"
    assert body["errors"] == [
        {"user": "U_A", "ok": False, "error": "already_in_channel"},
        {"user": BOT_USER_ID, "ok": False, "error": "cant_invite_self"},
        {"user": "U_GONE", "ok": False, "error": "user_not_found"},
    ]
    assert "U_C" not in fake_slack.members(channel)  # nobody is invited when one fails

    forced = await client.conversations_invite(channel=channel, users=["U_C", "U_A"], force=True)
    assert forced["errors"] == [{"user": "U_A", "ok": False, "error": "already_in_channel"}]
    assert "U_C" in fake_slack.members(channel)


async def test_invite_refusals_about_the_channel(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    outside = fake_slack.create_channel("someone-elses", members=("U_OWNER",))
    archived = fake_slack.create_channel("old-incident", is_archived=True)
    assert (await error_of(client.conversations_invite(channel="C_NOPE", users="U_A")))[0] == (
        "channel_not_found"
    )
    assert (await error_of(client.conversations_invite(channel=outside, users="U_A")))[0] == (
        "not_in_channel"
    )
    assert (await error_of(client.conversations_invite(channel=archived, users="U_A")))[0] == (
        "is_archived"
    )
    assert (await error_of(client.conversations_invite(channel=outside, users="")))[0] == "no_user"
    fake_slack.fail_next("conversations.invite", "missing_scope", status=200)
    assert (await error_of(client.conversations_invite(channel=outside, users="U_A")))[0] == (
        "missing_scope"
    )


async def test_start_over_forgets_what_happened_and_never_reuses_a_ts(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    home = fake_slack.create_channel("rollbacks", members=(BOT_USER_ID, "U_ANA"), creator="U_ANA")
    old = await client.chat_postMessage(channel=home, text="card")
    await client.chat_postMessage(channel=home, text="reply", thread_ts=old["ts"])
    await client.chat_postEphemeral(channel=home, user="U_ANA", text="only Ana")
    incident = (await client.conversations_create(name="inc-backend"))["channel"]["id"]
    await client.chat_postMessage(channel=incident, text="incident")

    fake_slack.start_over()

    assert fake_slack.messages() == [] and fake_slack.ephemerals_for("U_ANA") == []
    assert fake_slack.calls == []
    assert fake_slack.channel_named("inc-backend") is None
    assert fake_slack.channel_named("rollbacks") is not None
    assert fake_slack.members(home) == {BOT_USER_ID, "U_ANA"}
    new = await client.chat_postMessage(channel=home, text="a new card")
    assert float(new["ts"]) > float(old["ts"])
    with pytest.raises(AssertionError, match="no message"):
        fake_slack.message(home, old["ts"])
