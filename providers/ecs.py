"""AWS ECS provider: move a service back to an earlier task-definition revision."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EcsSettings(BaseModel):
    """Settings of an `ecs` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["ecs"]
    cluster: str = Field(description="ECS cluster name or ARN.")
    service: str = Field(description="ECS service name.")
    family: str = Field(description="Task-definition family, e.g. pmcrm-backend.")
    container: str = Field(description="Container whose image tag names the version.")
    region: str = Field(description="AWS region, e.g. eu-west-1.")
    profile: str | None = Field(default=None, description="AWS profile; default: the usual chain.")
    endpoint_url: str | None = Field(default=None, description="Override the ECS endpoint.")
    poll_interval_seconds: float = Field(default=5, gt=0, description="describe_services pace.")
    stable_timeout_seconds: float = Field(
        default=600, gt=0, description="How long the deployment may take to complete."
    )


class EcsProvider:
    """Placeholder until the provider is implemented."""

    def __init__(self, settings: EcsSettings) -> None:
        self.settings = settings
