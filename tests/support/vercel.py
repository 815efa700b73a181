"""The fake Vercel API of the playground, its pytest fixture and a provider factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from playground.vercel_api import FakeVercel, commit_of, git_meta
from providers.vercel import VercelProvider, VercelSettings

__all__ = ["FakeVercel", "Make", "Steps", "commit_of", "git_meta", "make_vercel", "vercel"]

Make = Callable[..., VercelProvider]


@pytest.fixture
async def vercel() -> AsyncIterator[FakeVercel]:
    """A started fake Vercel API with project `frontend`: v1.2.2, v1.2.3 and v1.2.4 serving."""
    async with FakeVercel() as fake:
        fake.add_project()
        yield fake


@pytest.fixture
async def make_vercel(vercel: FakeVercel, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Make]:
    """Build providers aimed at the fake (token in VERCEL_TOKEN); close them after the test."""
    monkeypatch.setenv("VERCEL_TOKEN", vercel.token)
    made: list[VercelProvider] = []

    def build(**overrides: Any) -> VercelProvider:
        provider = VercelProvider(VercelSettings.model_validate(vercel.settings(**overrides)))
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


class Steps:
    """A progress callback that keeps what it was told."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, text: str) -> None:
        self.lines.append(text)
