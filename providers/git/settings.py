"""Settings of a `git` target."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Branch names as git allows them, minus anything an option or a range could start with.
REF_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$"


class GitSettings(BaseModel):
    """Settings of a `git` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["git"]
    repository: str = Field(
        pattern=r"^[^-\s]\S*$",
        description="Remote to push to: an https or ssh URL, or a local path.",
    )
    branch: str = Field(
        default="main",
        pattern=REF_NAME,
        description="Branch the deploy pipeline deploys.",
    )
    mode: Literal["revert", "tag"] = Field(
        description="revert: revert the commits after the target and push the branch; "
        "tag: push an annotated <version>-rollback tag at the target's commit."
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Where the cached clone lives (one per target; never shared). Default: a "
        "temporary folder made on first use and removed at shutdown.",
    )
    tag_pattern: str = Field(
        default="v*", min_length=1, description="Glob of the tag names that are versions."
    )
    https_token: bool = Field(
        default=False,
        description="Send the token in token_env as the https credential of the repository "
        "(as GitHub's x-access-token).",
    )
    github_repository: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
        description="owner/name on GitHub whose workflow to dispatch after the push.",
    )
    token_env: str = Field(default="GITHUB_TOKEN", description="Variable holding the GitHub token.")
    workflow: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Workflow file name (or id) to dispatch with input `version`.",
    )
    workflow_ref: str | None = Field(
        default=None,
        pattern=REF_NAME,
        description="Ref to run the workflow on. Default: the branch.",
    )
    api_url: str = Field(default="https://api.github.com", description="GitHub REST API URL.")
    author_name: str = Field(default="rollbot", min_length=1, description="Commit/tag author.")
    author_email: str = Field(
        default="rollbot@localhost", min_length=1, description="Commit/tag author e-mail."
    )
    git_timeout_seconds: float = Field(
        default=120, gt=0, description="Deadline of one git command (a fetch, a push)."
    )
    request_timeout_seconds: float = Field(
        default=10, gt=0, description="Deadline of the workflow_dispatch request."
    )

    @field_validator("branch", "workflow_ref")
    @classmethod
    def _no_range(cls, value: str | None) -> str | None:
        if value is not None and ".." in value:
            raise ValueError("a ref name cannot contain '..'")
        return value

    @model_validator(mode="after")
    def _workflow_needs_repository(self) -> GitSettings:
        if (self.workflow is None) != (self.github_repository is None):
            raise ValueError("workflow and github_repository are set together or not at all")
        return self

    def secret_variables(self) -> dict[str, str]:
        """Name the variable that holds the token, when anything uses it."""
        if self.github_repository or self.https_token:
            return {"token_env": self.token_env}
        return {}

    @property
    def workflow_on(self) -> str:
        """The ref the workflow runs on."""
        return self.workflow_ref or self.branch
