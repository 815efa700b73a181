"""Docker Compose provider: recreate a compose service's containers on an earlier tag."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DockerComposeSettings(BaseModel):
    """Settings of a `docker_compose` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["docker_compose"]
    project: str = Field(description="Compose project name (label com.docker.compose.project).")
    service: str = Field(description="Compose service name (label com.docker.compose.service).")
    docker_host: str | None = Field(
        default=None, description="Docker Engine URL; default: DOCKER_HOST or the local socket."
    )
    pull: bool = Field(
        default=False, description="Pull a missing target tag from the image's registry."
    )
    pin_env_file: Path | None = Field(
        default=None, description="Env file the compose file reads the image tag from."
    )
    pin_variable: str | None = Field(
        default=None, description="Variable in pin_env_file that holds the tag, e.g. BACKEND_TAG."
    )
    stop_timeout_seconds: int | None = Field(
        default=None, ge=0, description="Stop timeout; default: the container's own StopTimeout."
    )
    healthy_timeout_seconds: float = Field(
        default=60, gt=0, description="How long a new container may take to run and be healthy."
    )
