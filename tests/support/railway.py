"""The fake Railway API of the playground, and its pytest fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from playground.railway_api import CRASHES, NEVER_READY, SUCCEEDS, FakeRailway, commit_of

__all__ = ["CRASHES", "NEVER_READY", "SUCCEEDS", "FakeRailway", "commit_of", "railway"]


@pytest.fixture
async def railway() -> AsyncIterator[FakeRailway]:
    """A started fake Railway holding the seeded history; closed after the test."""
    fake = FakeRailway()
    fake.seed()
    await fake.start()
    yield fake
    await fake.close()
