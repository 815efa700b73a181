"""The playground's page and JSON API served in the test's process, and its pytest fixture."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from playground.controls import Services
from playground.web import Person, playground_app
from tests.e2e_helpers import APPROVER, CHANNEL, OUTSIDER, REQUESTER
from tests.support.services import ServeApp
from tests.support.slack import FakeSlack, UserActions

PEOPLE = [
    Person(REQUESTER, "Riya", "requester"),
    Person(APPROVER, "Sam", "approver"),
    Person(OUTSIDER, "Nico", "no rights"),
]

ServePlayground = Callable[[FakeSlack, UserActions], Awaitable[str]]


@pytest.fixture
def serve_playground(serve_app: ServeApp) -> ServePlayground:
    """Serve the playground over a fake and the actions aimed at a bot; return its URL."""

    async def serve(fake: FakeSlack, slack: UserActions) -> str:
        services = Services(notes={"backend": "real: Docker containers"})
        app = playground_app(fake, slack, PEOPLE, CHANNEL, lambda: services)
        return await serve_app(app) + "/"

    return serve
