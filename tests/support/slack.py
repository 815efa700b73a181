"""The fake Slack of the playground, and its pytest fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from playground.slack_api import (
    ACK_DEADLINE,
    APP_ID,
    BOT_USER_ID,
    CHANNEL_NAME,
    FakeSlack,
    Json,
    SignedSlack,
    SocketSlack,
    UserActions,
    text_of,
)

__all__ = [
    "ACK_DEADLINE",
    "APP_ID",
    "BOT_USER_ID",
    "CHANNEL_NAME",
    "FakeSlack",
    "Json",
    "SignedSlack",
    "SocketSlack",
    "UserActions",
    "fake_slack",
    "text_of",
]


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A started FakeSlack, stopped after the test."""
    async with FakeSlack() as fake:
        yield fake
