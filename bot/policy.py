"""Who may request, read and approve: the approval policy, as the config states it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.matrix import Severity


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class People(_Strict):
    """Slack users and user groups."""

    users: list[str] = Field(default_factory=list, description="Slack user ids (U...).")
    groups: list[str] = Field(default_factory=list, description="Slack user-group ids (S...).")

    @property
    def anyone(self) -> bool:
        """Return True when nobody is listed, which means everyone."""
        return not self.users and not self.groups


class BreakGlass(_Strict):
    """When a requester may approve their own rollback."""

    enabled: bool = Field(default=True, description="Allow self-approval at all.")
    severities: list[Severity] = Field(
        default=[Severity.CRITICAL], description="Severities where self-approval is allowed."
    )


class ApprovalPolicy(_Strict):
    """Who may request, read and approve; an environment's `approval:` overrides key by key."""

    requesters: People = Field(default_factory=People, description="Empty: anyone may request.")
    approvers: People = Field(
        default_factory=People,
        description="Empty: anyone but the requester, and only outside protected environments.",
    )
    readers: People = Field(
        default_factory=People,
        description="Also may read status, history and reports (requesters and approvers may).",
    )
    required_approvals: int = Field(
        default=1, ge=0, le=5, description="Approvals needed; 0 runs right after severity."
    )
    break_glass: BreakGlass = Field(default_factory=BreakGlass)
    expires_after_minutes: float = Field(
        default=60, gt=0, description="An unapproved request expires after this long."
    )

    def merged(self, override: ApprovalPolicy | None) -> ApprovalPolicy:
        """Return this policy with the keys `override` sets replaced, the rest inherited.

        A list of people is replaced whole: an environment that names its approvers means
        exactly those, never those plus the top level's.
        """
        if override is None:
            return self
        changes: dict[str, Any] = {}
        for name in override.model_fields_set:
            mine, theirs = getattr(self, name), getattr(override, name)
            if isinstance(theirs, BreakGlass):
                theirs = mine.model_copy(
                    update={key: getattr(theirs, key) for key in theirs.model_fields_set}
                )
            changes[name] = theirs
        return self.model_copy(update=changes)


# Environment names protected unless the environment says `protected: false`.
PROTECTED_NAMES = ("production", "prod", "prd", "live")
