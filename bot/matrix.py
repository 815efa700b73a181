"""The rollback guide's decision matrix: issue type -> severity and action."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Severity(StrEnum):
    """Severity of the issue that prompts a rollback."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Action(StrEnum):
    """What the guide says to do about it."""

    IMMEDIATE = "immediate rollback"
    WITHIN_15_MIN = "rollback within 15 min"
    WITHIN_1_HOUR = "rollback within 1 hour"
    RESTORE_DATABASE = "rollback + restore database"
    FIX_FORWARD = "fix forward, don't roll back"


class MatrixRow(BaseModel):
    """One row of the decision matrix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    severity: Severity
    action: Action


ISSUES: dict[str, MatrixRow] = {
    "critical_bug": MatrixRow(
        label="Critical bug affecting all users",
        severity=Severity.CRITICAL,
        action=Action.IMMEDIATE,
    ),
    "security_vulnerability": MatrixRow(
        label="Security vulnerability", severity=Severity.CRITICAL, action=Action.IMMEDIATE
    ),
    "performance_degradation": MatrixRow(
        label="Performance degradation > 50%", severity=Severity.HIGH, action=Action.WITHIN_15_MIN
    ),
    "database_corruption": MatrixRow(
        label="Database corruption", severity=Severity.CRITICAL, action=Action.RESTORE_DATABASE
    ),
    "feature_broken": MatrixRow(
        label="Feature not working", severity=Severity.MEDIUM, action=Action.WITHIN_1_HOUR
    ),
    "minor_ui_bug": MatrixRow(
        label="Minor UI bug", severity=Severity.LOW, action=Action.FIX_FORWARD
    ),
    "failed_migration": MatrixRow(
        label="Failed migration", severity=Severity.HIGH, action=Action.RESTORE_DATABASE
    ),
}

ROLLBACK_WHEN = [
    "Issue is critical and affects many users",
    "Root cause is unknown",
    "Fix will take > 30 minutes",
    "Data integrity is at risk",
]
FIX_FORWARD_WHEN = [
    "Issue is minor and affects few users",
    "Root cause is known",
    "Fix is quick (< 15 minutes)",
    "Rollback is complex",
]
