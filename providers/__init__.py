"""Provider registry: one dict from the config name to the provider class."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from providers.base import Provider
from providers.docker_compose import DockerComposeProvider, DockerComposeSettings
from providers.ecs import EcsProvider, EcsSettings
from providers.ecs_blue_green import EcsBlueGreenProvider, EcsBlueGreenSettings
from providers.git import GitProvider, GitSettings
from providers.postgres_migrations import PostgresMigrationsProvider, PostgresMigrationsSettings
from providers.railway import RailwayProvider, RailwaySettings
from providers.redis_state import RedisStateProvider, RedisStateSettings
from providers.vercel import VercelProvider, VercelSettings

ProviderSettings = Annotated[
    DockerComposeSettings
    | EcsSettings
    | EcsBlueGreenSettings
    | GitSettings
    | PostgresMigrationsSettings
    | RailwaySettings
    | VercelSettings,
    Field(discriminator="provider"),
]

REGISTRY: dict[str, Any] = {
    "docker_compose": DockerComposeProvider,
    "ecs": EcsProvider,
    "ecs_blue_green": EcsBlueGreenProvider,
    "git": GitProvider,
    "postgres_migrations": PostgresMigrationsProvider,
    "railway": RailwayProvider,
    "vercel": VercelProvider,
}


# Targets with no versions of their own: they only run as a later step of a plan.
StepSettings = Annotated[
    DockerComposeSettings
    | EcsSettings
    | EcsBlueGreenSettings
    | GitSettings
    | PostgresMigrationsSettings
    | RailwaySettings
    | RedisStateSettings
    | VercelSettings,
    Field(discriminator="provider"),
]

STATE_STEPS: dict[str, Any] = {"redis_state": RedisStateProvider}


def build_provider(settings: ProviderSettings) -> Provider:
    """Create the provider named by `settings.provider`."""
    provider: Provider = REGISTRY[settings.provider](settings)
    return provider


def build_step(settings: StepSettings) -> Provider | RedisStateProvider:
    """Create the provider or state target of one step of a plan."""
    if isinstance(settings, RedisStateSettings):
        return RedisStateProvider(settings)
    return build_provider(settings)
