"""Providers by service environment, created once from the config and reused."""

from __future__ import annotations

from bot.config import RollbotConfig
from providers import build_provider
from providers.base import Provider


class ProviderPool:
    """One provider per service environment, created on first use and reused."""

    def __init__(self, config: RollbotConfig) -> None:
        self._config = config
        self._providers: dict[tuple[str, str], Provider] = {}

    def get(self, service: str, environment: str) -> Provider:
        """Return the provider of one service environment."""
        key = (service, environment)
        if key not in self._providers:
            settings = self._config.environment(service, environment).provider
            self._providers[key] = build_provider(settings)
        return self._providers[key]

    async def aclose(self) -> None:
        """Close every provider created."""
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
