"""The playground's page and JSON API served in the test's process, and its pytest fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from playground.web import Person, playground_app
from tests.e2e_helpers import APPROVER, CHANNEL, OUTSIDER, REQUESTER
from tests.support.slack import FakeSlack, UserActions

PEOPLE = [
    Person(REQUESTER, "Riya", "requester"),
    Person(APPROVER, "Sam", "approver"),
    Person(OUTSIDER, "Nico", "no rights"),
]

ServePlayground = Callable[[FakeSlack, UserActions], Awaitable[str]]


@pytest.fixture
async def serve_playground() -> AsyncIterator[ServePlayground]:
    """Serve the playground over a fake and the actions aimed at a bot; return its URL."""
    runners: list[web.AppRunner] = []

    async def serve(fake: FakeSlack, slack: UserActions) -> str:
        notes = {"backend": "real: Docker containers"}
        runner = web.AppRunner(playground_app(fake, slack, PEOPLE, CHANNEL, notes))
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}/"

    try:
        yield serve
    finally:
        for runner in runners:
            await runner.cleanup()
