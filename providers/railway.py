"""Railway provider: roll a service back to an earlier deployment via the GraphQL API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RailwaySettings(BaseModel):
    """Settings of a `railway` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["railway"]
    endpoint: str = Field(
        default="https://backboard.railway.com/graphql/v2", description="GraphQL endpoint."
    )
    token_env: str = Field(default="RAILWAY_TOKEN", description="Variable holding the token.")
    token_kind: Literal["project", "account"] = Field(
        default="project",
        description="project: Project-Access-Token header; account: Authorization bearer.",
    )
    project_id: str = Field(description="Railway project id.")
    service_id: str = Field(description="Railway service id.")
    environment_id: str = Field(description="Railway environment id.")
    poll_interval_seconds: float = Field(default=3, gt=0, description="Deployment status pace.")
    deploy_timeout_seconds: float = Field(
        default=600, gt=0, description="How long the new deployment may take to succeed."
    )

    def secret_variables(self) -> dict[str, str]:
        """Name the variable that holds the token."""
        return {"token_env": self.token_env}


class RailwayProvider:
    """Placeholder until the provider is implemented."""

    def __init__(self, settings: RailwaySettings) -> None:
        self.settings = settings
