"""The fake Slack's file uploads, driven by the real slack_sdk `files_upload_v2`."""

from __future__ import annotations

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.slack import FakeSlack, text_of


@pytest.fixture
def client(fake_slack: FakeSlack) -> AsyncWebClient:
    """The real slack_sdk client, pointed at the fake."""
    return AsyncWebClient(token="xoxb-test", base_url=fake_slack.base_url)


async def test_upload_v2_shares_the_file_in_a_thread(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    root = await client.chat_postMessage(channel="C_OPS", text="card")
    answer = await client.files_upload_v2(
        channel="C_OPS",
        thread_ts=root["ts"],
        filename="incident-rb-1.md",
        content="# Incident Report\n\nrésumé\n",
        title="Incident report",
        initial_comment="The report",
    )

    assert answer["file"]["title"] == "Incident report"
    methods = [c.method for c in fake_slack.calls]
    assert methods == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]
    (shared,) = fake_slack.uploads("C_OPS", root["ts"])
    assert shared["name"] == "incident-rb-1.md"
    assert shared["content"] == "# Incident Report\n\nrésumé\n"
    assert shared["size"] == shared["length"] == len("# Incident Report\n\nrésumé\n".encode())
    assert shared["initial_comment"] == "The report"
    (reply,) = fake_slack.thread("C_OPS", root["ts"])
    assert text_of(reply) == "The report"
    assert reply["files"][0]["id"] == shared["id"]


async def test_bad_upload_arguments_are_refused_like_slack(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as no_length:
        await client.api_call("files.getUploadURLExternal", params={"filename": "a.md"})
    assert no_length.value.response["error"] == "invalid_arguments"

    url = await client.files_getUploadURLExternal(filename="a.md", length=3)
    # Completing before the bytes reached the upload URL finds no file.
    with pytest.raises(SlackApiError) as early:
        await client.files_completeUploadExternal(files=[{"id": url["file_id"]}])
    assert early.value.response["error"] == "file_not_found"

    async with aiohttp.ClientSession() as session:
        posted = await session.post(url["upload_url"], data=b"abc")
        assert posted.status == 200

    with pytest.raises(SlackApiError) as two_channels:
        await client.files_completeUploadExternal(
            files=[{"id": url["file_id"]}], channels=["C_A", "C_B"], thread_ts="1.2"
        )
    assert two_channels.value.response["error"] == "invalid_arguments"

    done = await client.files_completeUploadExternal(
        files=[{"id": url["file_id"], "title": "A"}], channel_id="C_OPS"
    )
    assert done["files"] == [{"id": url["file_id"], "title": "A"}]
    with pytest.raises(SlackApiError) as twice:
        await client.files_completeUploadExternal(files=[{"id": url["file_id"]}])
    assert twice.value.response["error"] == "file_not_found"
    assert [f["content"] for f in fake_slack.uploads("C_OPS")] == ["abc"]
