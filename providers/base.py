"""The provider contract: one Protocol every rollback target implements, and its errors.

Error tree::

    ProviderError            anything a provider reports; `message` is fit for a Slack thread
    ├── NotFound             the service, container or version does not exist
    ├── Refused              the target said no (precondition, bad request)
    │   ├── AuthRejected     the credentials were rejected (401/403)
    │   └── Conflicting      the target is busy or in a conflicting state (409)
    ├── TimedOut             no answer or no stable state before the deadline
    ├── Transient            a failure worth retrying for reads (network, 5xx)
    │   └── RateLimited      429; `retry_after` holds the server's wish in seconds
    └── RollbackFailed       the rollback ran and failed; `target_state` says where it stands

Providers translate every vendor exception into one of these at their boundary
(``raise NotFound(...) from exc``); no vendor type escapes a provider.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

# The rollback a provider call runs for, so what it leaves behind (a backup file) can be
# named after it. A context variable: concurrent rollbacks each see their own.
_RUNNING_ROLLBACK: ContextVar[str | None] = ContextVar("running_rollback", default=None)


@contextmanager
def running_for(rollback_id: str) -> Iterator[None]:
    """Mark provider calls made inside the block as made for `rollback_id`."""
    token = _RUNNING_ROLLBACK.set(rollback_id)
    try:
        yield
    finally:
        _RUNNING_ROLLBACK.reset(token)


def running_rollback() -> str | None:
    """Return the id of the rollback the current provider call runs for, if any."""
    return _RUNNING_ROLLBACK.get()


class ProviderError(Exception):
    """A provider failure with a message fit for a Slack thread."""

    def __init__(self, message: str, *, target_state: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target_state = target_state


class NotFound(ProviderError):
    """The service, container or version does not exist."""


class Refused(ProviderError):
    """The target refused the operation."""


class AuthRejected(Refused):
    """The credentials were rejected."""


class Conflicting(Refused):
    """The target is busy or in a state that conflicts with the request."""


class TimedOut(ProviderError):
    """The target did not answer or settle before the deadline."""


class Transient(ProviderError):
    """A failure worth retrying for reads."""


class RateLimited(Transient):
    """The target asked us to slow down."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, target_state: str | None = None
    ) -> None:
        super().__init__(message, target_state=target_state)
        self.retry_after = retry_after


class RollbackFailed(ProviderError):
    """The rollback ran and failed; `target_state` says what runs now."""


@dataclass(frozen=True)
class Version:
    """One version a service can be rolled back to."""

    name: str
    created_at: datetime | None = None
    current: bool = False
    previous_stable: bool = False
    detail: str = ""
    aliases: tuple[str, ...] = ()
    # Set where `name` is a platform's id nobody remembers (a Railway deployment's UUID):
    # what the id is ("deployment") and the name people know the version by (an image tag,
    # a short commit). Messages show "v1.2.3 (deployment 3f2a…)"; commands keep the id.
    id_kind: str = ""
    label: str = ""

    def answers_to(self, name: str) -> bool:
        """Return True when a user's name for a version means this one."""
        return name == self.name or name in self.aliases

    def shown(self, typed: str | None = None) -> str:
        """Say the version as people know it, with the platform's id beside it.

        For a version named by a platform id: what the user typed when it is another name
        of it (they know it by that), else its label; the id alone when it has neither.
        Any other version is said by its name.
        """
        if not self.id_kind:
            return self.name
        known = typed if typed and typed != self.name and self.answers_to(typed) else self.label
        if not known or known == self.name:
            return self.name
        return f"{known} ({self.id_kind} {self.name})"


@dataclass
class Plan:
    """What a rollback will do, shown before anyone approves it."""

    steps: list[str]
    warnings: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What a finished rollback changed."""

    summary: str
    notes: list[str] = field(default_factory=list)
    # What the platform runs now, when it is not the target itself: Railway serves a new
    # deployment made from the target's image. None: the target runs.
    running: Version | None = None


Progress = Callable[[str], Awaitable[None]]


class SecretSettings(Protocol):
    """Settings that name environment variables holding secrets (checked at start-up)."""

    def secret_variables(self) -> dict[str, str]:
        """Map each settings key to the environment variable it names."""
        ...


class ProgramSettings(Protocol):
    """Settings that name a program the provider runs (checked at start-up)."""

    def required_programs(self) -> dict[str, str]:
        """Map each settings key to the program it names: a name on PATH, or a path."""
        ...


class Provider(Protocol):
    """A rollback target: reads its versions, plans and runs the rollback."""

    async def current_version(self) -> str:
        """Return the version running now."""
        ...

    async def list_versions(self) -> list[Version]:
        """Return available versions, newest first, current and previous stable marked."""
        ...

    async def plan(self, target: str) -> Plan:
        """Describe what rolling back to `target` will do, changing nothing."""
        ...

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Roll back to `target`, reporting each step through `progress`."""
        ...

    async def describe_state(self) -> str:
        """Say in one line what runs now (asked from the target, not assumed)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


async def say(progress: Progress, text: str) -> None:
    """Report a step; a failing reporter must not abort a rollback half-way through."""
    try:
        await progress(text)
    except Exception:
        log.warning("provider.progress_failed", text=text, exc_info=True)


REDACTED = "[redacted]"


def redact(text: str, *secrets: str | None) -> str:
    """Replace every secret found in `text` (a platform may echo a request) with [redacted]."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


async def state_or_unknown(describe: Callable[[], Awaitable[str]]) -> str:
    """Describe a target for an error message without raising a second error."""
    try:
        return await describe()
    except ProviderError as exc:
        return f"unknown ({exc.message})"


def sentence(text: str) -> str:
    """End a message with a full stop so another sentence can follow it."""
    return text if text.endswith((".", "!", "?")) else f"{text}."


def human_size(size: int) -> str:
    """Return a byte count as people read it."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover
