"""The fake Vercel API of the playground, and its pytest fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from playground.vercel_api import FakeVercel

__all__ = ["FakeVercel", "vercel"]


@pytest.fixture
async def vercel() -> AsyncIterator[FakeVercel]:
    """A started fake Vercel API with project `frontend`: v1.2.2, v1.2.3 and v1.2.4 serving."""
    async with FakeVercel() as fake:
        fake.add_project()
        yield fake
