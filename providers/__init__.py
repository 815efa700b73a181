"""Provider registry: one dict from the config name to the provider class."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from providers.base import Provider
from providers.docker_compose import DockerComposeProvider, DockerComposeSettings

ProviderSettings = Annotated[DockerComposeSettings, Field(discriminator="provider")]

REGISTRY: dict[str, Any] = {
    "docker_compose": DockerComposeProvider,
}


def build_provider(settings: ProviderSettings) -> Provider:
    """Create the provider named by `settings.provider`."""
    provider: Provider = REGISTRY[settings.provider](settings)
    return provider
