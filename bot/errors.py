"""Errors the user caused or can fix; each carries a message fit for Slack or a terminal.

Error tree::

    RollbotError            anything rollbot explains to the user
    ├── UsageError          the command could not be parsed (the usage is shown)
    ├── ConfigError         the YAML config is invalid (every problem with its key path)
    ├── NotAllowed          the policy does not let this user do this
    ├── Conflict            another rollback holds the lock, or the state moved on
    │   └── Busy            another rollback is open for the service: its card is linked
    ├── InvalidRequest      unknown service/environment/version and the like
    └── ReasonRequired      the step needs a written reason (override, break-glass)
"""

from __future__ import annotations

from enum import StrEnum


class RollbotError(Exception):
    """An error whose message is shown to the user as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(RollbotError):
    """The command could not be parsed."""


class ConfigError(RollbotError):
    """The configuration is invalid."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class NotAllowed(RollbotError):
    """The approval policy forbids this."""


class Conflict(RollbotError):
    """Someone else holds the lock or moved the rollback on first."""


class ChangedSinceShown(Conflict):
    """What runs changed between the card and the approval; the plan was made again."""


class Busy(Conflict):
    """Another rollback is open for the same service and environment; where its card is."""

    def __init__(self, message: str, channel_id: str | None, message_ts: str | None) -> None:
        super().__init__(message)
        self.channel_id = channel_id
        self.message_ts = message_ts


class InvalidRequest(RollbotError):
    """The request names something that does not exist or is malformed."""


class Purpose(StrEnum):
    """Why a written reason is needed."""

    OVERRIDE = "override"
    BREAK_GLASS = "break_glass"
    PREFLIGHT = "preflight"
    RESTORE_BREAK_GLASS = "restore_break_glass"


class ReasonRequired(RollbotError):
    """The step goes ahead only with a written reason; `purpose` says which."""

    def __init__(self, message: str, purpose: Purpose) -> None:
        super().__init__(message)
        self.purpose = purpose
