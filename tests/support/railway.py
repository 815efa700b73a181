"""The fake Railway API of the playground, and its pytest fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from playground.railway_api import CRASHES, NEVER_READY, SUCCEEDS, FakeRailway, commit_of
from providers.railway import RailwayProvider, RailwaySettings

__all__ = [
    "CRASHES",
    "NEVER_READY",
    "SUCCEEDS",
    "FakeRailway",
    "RailwayFactory",
    "commit_of",
    "make_railway",
    "railway",
]

RailwayFactory = Callable[..., RailwayProvider]


@pytest.fixture
async def railway() -> AsyncIterator[FakeRailway]:
    """A started fake Railway holding the seeded history; closed after the test."""
    fake = FakeRailway()
    fake.seed()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def make_railway(
    railway: FakeRailway, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RailwayFactory]:
    """Build providers for the fake's service (token in RAILWAY_TOKEN); close them after."""
    monkeypatch.setenv("RAILWAY_TOKEN", railway.token)
    made: list[RailwayProvider] = []

    def make(**settings: Any) -> RailwayProvider:
        values: dict[str, Any] = {
            "provider": "railway",
            "endpoint": railway.url,
            "project_id": railway.project_id,
            "service_id": railway.service_id,
            "environment_id": railway.environment_id,
            "poll_interval_seconds": 0.1,
            "deploy_timeout_seconds": 10,
            **settings,
        }
        made.append(RailwayProvider(RailwaySettings(**values)))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()
