"""ECS blue/green provider: switch an ALB listener back to the other target group."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EcsBlueGreenSettings(BaseModel):
    """Settings of an `ecs_blue_green` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["ecs_blue_green"]
    listener_arn: str = Field(description="ARN of the ALB listener that takes the traffic.")
    blue_target_group_arn: str = Field(description="ARN of the blue target group.")
    green_target_group_arn: str = Field(description="ARN of the green target group.")
    blue_label: str = Field(default="blue", description="Version name of the blue group.")
    green_label: str = Field(default="green", description="Version name of the green group.")
    region: str = Field(description="AWS region, e.g. eu-west-1.")
    profile: str | None = Field(default=None, description="AWS profile; default: the usual chain.")
    endpoint_url: str | None = Field(default=None, description="Override the ELBv2 endpoint.")


class EcsBlueGreenProvider:
    """Placeholder until the provider is implemented."""

    def __init__(self, settings: EcsBlueGreenSettings) -> None:
        self.settings = settings
