"""Provider registry: one tuple lists every kind of target, its settings and its class.

What a kind can do beyond the `Provider` contract is asked of its class through the
capability protocols (`providers/capabilities.py`), never by its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field

from providers.base import Provider
from providers.capabilities import ClearsState
from providers.docker_compose import DockerComposeProvider, DockerComposeSettings
from providers.docker_swarm import DockerSwarmProvider, DockerSwarmSettings
from providers.ecs import EcsProvider, EcsSettings
from providers.ecs_blue_green import EcsBlueGreenProvider, EcsBlueGreenSettings
from providers.git import GitProvider, GitSettings
from providers.helm import HelmProvider, HelmSettings
from providers.kubernetes import KubernetesProvider, KubernetesSettings
from providers.lambda_alias import LambdaAliasProvider, LambdaAliasSettings
from providers.postgres_migrations import PostgresMigrationsProvider, PostgresMigrationsSettings
from providers.railway import RailwayProvider, RailwaySettings
from providers.redis_state import RedisStateProvider, RedisStateSettings
from providers.vercel import VercelProvider, VercelSettings


@dataclass(frozen=True)
class Kind:
    """One kind of rollback target: the name configs use, its settings and its class."""

    name: str
    settings: type[BaseModel]
    factory: type[Any]

    @property
    def versioned(self) -> bool:
        """Return True when it has versions to go back to (a cache only runs as a later step)."""
        return all(hasattr(self.factory, m) for m in ("list_versions", "rollback", "plan"))

    @property
    def restore_kind(self) -> str | None:
        """Return the word `/rollback restore` knows it by ("database"), if it keeps backups."""
        word = getattr(self.factory, "restore_kind", None)
        return word if isinstance(word, str) else None


PROVIDERS: tuple[Kind, ...] = (
    Kind("docker_compose", DockerComposeSettings, DockerComposeProvider),
    Kind("docker_swarm", DockerSwarmSettings, DockerSwarmProvider),
    Kind("ecs", EcsSettings, EcsProvider),
    Kind("ecs_blue_green", EcsBlueGreenSettings, EcsBlueGreenProvider),
    Kind("git", GitSettings, GitProvider),
    Kind("helm", HelmSettings, HelmProvider),
    Kind("kubernetes", KubernetesSettings, KubernetesProvider),
    Kind("lambda_alias", LambdaAliasSettings, LambdaAliasProvider),
    Kind("postgres_migrations", PostgresMigrationsSettings, PostgresMigrationsProvider),
    Kind("railway", RailwaySettings, RailwayProvider),
    Kind("redis_state", RedisStateSettings, RedisStateProvider),
    Kind("vercel", VercelSettings, VercelProvider),
)
BY_NAME: dict[str, Kind] = {kind.name: kind for kind in PROVIDERS}

# The settings an environment's provider may have (a versioned kind), and a step's (any).
# Pydantic needs the unions spelled out; tests/test_config.py checks they match PROVIDERS.
ProviderSettings = Annotated[
    DockerComposeSettings
    | DockerSwarmSettings
    | EcsSettings
    | EcsBlueGreenSettings
    | GitSettings
    | HelmSettings
    | KubernetesSettings
    | LambdaAliasSettings
    | PostgresMigrationsSettings
    | RailwaySettings
    | VercelSettings,
    Field(discriminator="provider"),
]
StepSettings = Annotated[
    DockerComposeSettings
    | DockerSwarmSettings
    | EcsSettings
    | EcsBlueGreenSettings
    | GitSettings
    | HelmSettings
    | KubernetesSettings
    | LambdaAliasSettings
    | PostgresMigrationsSettings
    | RailwaySettings
    | RedisStateSettings
    | VercelSettings,
    Field(discriminator="provider"),
]


def restorers(word: str) -> frozenset[str]:
    """Return the kinds `/rollback restore WORD` restores (e.g. "database")."""
    return frozenset(kind.name for kind in PROVIDERS if kind.restore_kind == word)


def build_provider(settings: ProviderSettings) -> Provider:
    """Create the provider named by `settings.provider`."""
    provider: Provider = BY_NAME[settings.provider].factory(settings)
    return provider


def build_step(settings: StepSettings) -> Provider | ClearsState:
    """Create the provider or state target of one step of a plan."""
    target: Provider | ClearsState = BY_NAME[settings.provider].factory(settings)
    return target
