"""Providers by service environment, created once from the config and reused."""

from __future__ import annotations

from bot.config import RollbotConfig
from providers import build_provider, build_step
from providers.base import Provider
from providers.capabilities import ClearsState

Target = Provider | ClearsState


class ProviderPool:
    """One provider per service environment, created on first use and reused."""

    def __init__(self, config: RollbotConfig) -> None:
        self._config = config
        self._providers: dict[tuple[str, str], Provider] = {}
        self._steps: dict[tuple[str, str, int], Target] = {}

    def get(self, service: str, environment: str) -> Provider:
        """Return the provider of one service environment (step 1 of its plan)."""
        key = (service, environment)
        if key not in self._providers:
            settings = self._config.environment(service, environment).provider
            self._providers[key] = build_provider(settings)
        return self._providers[key]

    def kind(self, service: str, environment: str) -> str:
        """Return the provider kind of an environment, e.g. "docker_compose"."""
        return self._config.environment(service, environment).provider.provider

    def step(self, service: str, environment: str, index: int) -> Target:
        """Return the target of step `index` (0 is the provider) of an environment's plan."""
        if index == 0:
            return self.get(service, environment)
        key = (service, environment, index)
        if key not in self._steps:
            settings = self._config.environment(service, environment).steps[index - 1].provider
            self._steps[key] = build_step(settings)
        return self._steps[key]

    async def aclose(self) -> None:
        """Close every provider created."""
        for target in [*self._providers.values(), *self._steps.values()]:
            await target.aclose()
        self._providers.clear()
        self._steps.clear()
