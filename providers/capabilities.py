"""What a provider can do beyond the `Provider` contract: one small protocol per capability.

The engine asks "does this target support X" with ``isinstance(target, X)`` and never
names a provider class; a provider gains a capability by having its methods. The
registry (`providers/__init__.py`) says what a kind can do before any provider is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from providers.base import Outcome, Plan, Progress, human_size


@runtime_checkable
class RevertsCommits(Protocol):
    """A target that can undo one named bad commit instead of going back to a version."""

    async def plan_revert(self, commit: str) -> Plan:
        """Describe reverting `commit`, changing nothing."""
        ...

    async def revert(self, commit: str, progress: Progress) -> Outcome:
        """Revert `commit` and publish the result."""
        ...


@runtime_checkable
class Reconciles(Protocol):
    """A target that can make whole what a crash left half-done (a container swap cut short)."""

    async def reconcile(self) -> list[str]:
        """Finish or undo a half-done change so the service runs; say what was repaired."""
        ...


@runtime_checkable
class ClearsState(Protocol):
    """A state target with no versions of its own (a cache): a later step clears it."""

    async def plan_clear(self) -> Plan:
        """Describe what clearing will delete and back up, changing nothing."""
        ...

    async def clear(self, progress: Progress) -> Outcome:
        """Back up, then delete the state."""
        ...

    async def describe_state(self) -> str:
        """Say in one line what the target holds now."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class BackupListing:
    """One backup as people see it in a listing and a restore plan."""

    name: str
    created_at: datetime
    size_bytes: int
    detail: str
    # Taken before a rollback: the one a plain `/rollback restore KIND` picks.
    pre_rollback: bool = False

    def describe(self) -> str:
        """Say in one line which backup this is."""
        return (
            f"`{self.name}` ({human_size(self.size_bytes)}, taken "
            f"{self.created_at:%Y-%m-%d %H:%M:%S} UTC, {self.detail})"
        )


@runtime_checkable
class Restorable(Protocol):
    """A target that keeps backups and can restore one (`/rollback restore KIND`)."""

    # The word people use for it in `/rollback restore KIND` and `/rollback backups KIND`.
    restore_kind: str

    async def backup_listing(self) -> list[BackupListing]:
        """Return the target's backups, newest first."""
        ...

    async def restore(self, name: str, progress: Progress) -> Outcome:
        """Restore the named backup (one `backup_listing` lists)."""
        ...

    async def describe_state(self) -> str:
        """Say in one line what the target holds now."""
        ...


class Verdict(StrEnum):
    """What one preflight check found."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    WARN = "warn"
    FAIL = "fail"

    @staticmethod
    def worst(verdicts: Iterable[Verdict]) -> Verdict:
        """The verdict of several findings: any fail fails, else any warn warns."""
        found = set(verdicts)
        return next((v for v in (Verdict.FAIL, Verdict.WARN) if v in found), Verdict.PASS)


@dataclass(frozen=True)
class PreflightCheck:
    """One check of whether the target can run, with one line of why."""

    # A short, stable id ("image-pullable"): a break-glass approval names the one it overrides.
    name: str
    verdict: Verdict
    # One line fit for the card; never a secret or an environment variable's value.
    why: str


@dataclass(frozen=True)
class Identity:
    """A version as people know it, and exactly what it is on the platform."""

    version: str
    # E.g. "sha256:4f1c… (from backend:v1.2.3)", "arn:aws:ecs:…:task-definition/backend:41",
    # "dpl_8Hk2… (commit 1a2b3c4)", "migration 20240301000000_add_posts".
    exact: str
    # What it was built from, the same for every deployment of it (a commit), where a
    # platform makes a new deployment id for each redeploy: tells a redeploy of the bad
    # build from a new one. None where the version already names the build.
    build: str | None = None


@dataclass(frozen=True)
class PreflightReport:
    """What a rollback to a version will run, whether it can, and what changes."""

    current: Identity | None
    target: Identity
    checks: list[PreflightCheck] = field(default_factory=list)
    # What differs between current and target where the provider knows it, one line each:
    # environment variable *names* added or removed (never values), ports, replicas,
    # command, migrations undone with their safety verdict.
    changes: list[str] = field(default_factory=list)


@runtime_checkable
class Preflight(Protocol):
    """A target that can prove, before approval, that a version can run."""

    async def preflight(self, target: str) -> PreflightReport:
        """Check that `target` can run and say exactly what changes, changing nothing."""
        ...


@runtime_checkable
class Describe(Protocol):
    """A target that can say exactly what runs now (checked again at approval time)."""

    async def identity_now(self) -> Identity:
        """Return the exact identity of what runs now, asked from the platform."""
        ...


@dataclass(frozen=True)
class FreezeRecord:
    """What a freeze changed on the platform, kept so that unfreezing puts exactly that back."""

    # One line for the card and the timeline: "auto-deploys disabled for service api".
    action: str
    # The platform's settings as they were before the freeze, to restore them exactly;
    # never a secret.
    saved: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Freeze(Protocol):
    """A target whose platform can keep a bad version out after a rollback."""

    async def freeze(self, bad: str, good: str) -> FreezeRecord:
        """Keep `bad` from being deployed again (pause auto-deploys, gate it, pin `good`)."""
        ...

    async def unfreeze(self, record: FreezeRecord) -> str:
        """Put back exactly what `freeze` changed; say in one line what was restored."""
        ...
