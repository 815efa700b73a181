"""Vercel provider: promote an earlier production deployment (instant rollback)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class VercelSettings(BaseModel):
    """Settings of a `vercel` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["vercel"]
    api_url: str = Field(default="https://api.vercel.com", description="REST API base URL.")
    token_env: str = Field(default="VERCEL_TOKEN", description="Variable holding the token.")
    team_id: str | None = Field(default=None, description="Team id (teamId query parameter).")
    project: str = Field(description="Project id or name.")
    poll_interval_seconds: float = Field(default=3, gt=0, description="Alias job status pace.")
    promote_timeout_seconds: float = Field(
        default=300, gt=0, description="How long the rollback may take to finish."
    )

    def secret_variables(self) -> dict[str, str]:
        """Name the variable that holds the token."""
        return {"token_env": self.token_env}


class VercelProvider:
    """Placeholder until the provider is implemented."""

    def __init__(self, settings: VercelSettings) -> None:
        self.settings = settings
