"""A Helm release's revisions, as `helm history -o json` lists them, and their version names.

Naming rule: a revision is named by its app version (`appVersion` of its chart), or by
its chart (`tiny-0.1.0`) when the chart has none. When several listed revisions share a
name, the newest keeps it and each older one is `NAME+rN` (a rollback makes a new
revision with the same app version as its target: the new one is `2.0.0`, the target
becomes `2.0.0+r2`). Every revision also answers to its number (`/rollback web 3`) and
`rN`, as `helm rollback RELEASE N` takes it.

Current is the newest revision, the one `helm status` reports: normally `deployed`;
after a failed upgrade it is `failed` (the cluster holds what that upgrade applied) and
the `deployed` revision below it is the last good one. Previous stable is the newest
older revision that was deployed successfully (`superseded`, or that `deployed` one).
A `failed` or `pending-*` revision is never offered as previous stable, and naming one
is refused: it never became ready, so going back to it brings the failure back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from providers.base import Version

PENDING = frozenset({"pending-install", "pending-upgrade", "pending-rollback"})
# Statuses of a revision that ran and became the release: the ones a rollback may go to.
GOOD = frozenset({"superseded", "deployed"})


@dataclass(frozen=True)
class Revision:
    """One revision of a release, as `helm history` lists it."""

    number: int
    status: str
    chart: str
    app_version: str
    description: str
    updated: datetime | None

    @property
    def pending(self) -> bool:
        """Whether an install, upgrade or rollback of this revision has not finished."""
        return self.status in PENDING

    def what(self) -> str:
        """Its chart and app version, as the card shows them."""
        app = f"app {self.app_version}" if self.app_version else "no app version"
        return f"{self.chart}, {app}"

    def first_line(self) -> str:
        """Its description's first line, short."""
        line = self.description.strip().splitlines()[0] if self.description.strip() else ""
        return line if len(line) <= 160 else line[:159] + "…"


def parse(rows: Any) -> list[Revision]:
    """The revisions of `helm history -o json`, newest first."""
    found = [
        Revision(
            number=int(row["revision"]),
            status=str(row.get("status") or "unknown"),
            chart=str(row.get("chart") or "unknown chart"),
            app_version=str(row.get("app_version") or ""),
            description=str(row.get("description") or ""),
            updated=_time(row.get("updated")),
        )
        for row in rows or []
        if isinstance(row, dict) and str(row.get("revision", "")).isdigit()
    ]
    return sorted(found, key=lambda r: r.number, reverse=True)


@dataclass
class History:
    """A release's listed revisions (newest first), with a name for each."""

    revisions: list[Revision]

    def __post_init__(self) -> None:
        self.names: dict[int, str] = {}
        seen: set[str] = set()
        for revision in self.revisions:
            base = revision.app_version or revision.chart
            self.names[revision.number] = base if base not in seen else f"{base}+r{revision.number}"
            seen.add(base)

    @property
    def current(self) -> Revision:
        """The newest revision: what helm last did to the release."""
        return self.revisions[0]

    def name(self, revision: Revision) -> str:
        """The version name people use for a revision."""
        return self.names[revision.number]

    def previous(self) -> Revision | None:
        """The newest older revision that was deployed successfully."""
        return next((r for r in self.revisions[1:] if r.status in GOOD), None)

    def last_deployed(self) -> Revision | None:
        """The revision helm holds as `deployed`, if any."""
        return next((r for r in self.revisions if r.status == "deployed"), None)

    def versions(self) -> list[Version]:
        """The revisions as versions, newest first, current and previous stable marked."""
        previous = self.previous()
        return [
            Version(
                name=self.name(r),
                created_at=r.updated,
                current=r is self.current,
                previous_stable=r is previous,
                detail=_detail(r),
                aliases=(str(r.number), f"r{r.number}"),
            )
            for r in self.revisions
        ]

    def find(self, target: str) -> Revision | None:
        """The revision a user's name for a version means: its name or its number."""
        return next(
            (r for r in self.revisions if target in (self.name(r), str(r.number), f"r{r.number}")),
            None,
        )

    def available(self) -> str:
        """The names on offer, for an error message."""
        return ", ".join(
            f"{self.name(r)} (revision {r.number}, {r.status})" for r in self.revisions
        )

    def line(self, revision: Revision) -> str:
        """One revision in a sentence: its number, status, chart and app version."""
        return f"revision {revision.number} ({revision.status}; {revision.what()})"


def _detail(revision: Revision) -> str:
    parts = [f"revision {revision.number}", revision.status, revision.what()]
    if revision.first_line():
        parts.append(revision.first_line())
    return "; ".join(parts)


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
