"""What the clone holds: version tags, commits and a snapshot of the remote, and their order.

Versions are the tags matching ``tag_pattern`` (``*-rollback`` tags excluded), newest first
by their commit's date, then by version numbers. The current version is the newest tag
reachable from the branch head; when the head has exactly the files of another tag (what a
revert rollback leaves), that tag; in tag mode, a ``<version>-rollback`` tag created after
it wins (the deploy pipeline deploys the tag pushed last).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import datetime

from bot.names import VERSION_PATTERN

ROLLBACK_SUFFIX = "-rollback"
SHORT_SHA = 7
# A commit sha as users give it: abbreviated (as git log --oneline shows it) or whole.
COMMIT_PATTERN = re.compile(r"[0-9a-f]{7,40}")
REVERTS = re.compile(r"This reverts commit ([0-9a-f]{40})")
TAG_FIELDS = (
    "%(refname:strip=2)",
    "%(objecttype)",
    "%(objectname)",
    "%(*objectname)",
    "%(tree)",
    "%(*tree)",
    "%(committerdate:iso-strict)",
    "%(*committerdate:iso-strict)",
    "%(creatordate:iso-strict)",
    "%(subject)",
    "%(*subject)",
)


@dataclass(frozen=True)
class Tag:
    """One version tag and the commit it names."""

    name: str
    commit: str
    tree: str
    committed_at: datetime | None
    created_at: datetime | None
    subject: str

    def describe(self) -> str:
        """Say which commit the tag names."""
        return f"{self.name} ({self.commit[:SHORT_SHA]} “{self.subject[:80]}”)"


@dataclass(frozen=True)
class Commit:
    """One commit on the branch."""

    sha: str
    subject: str
    merge: bool = False
    empty: bool = False
    authored_at: datetime | None = None

    def describe(self) -> str:
        """Say which commit this is in a few words."""
        kind = " (merge)" if self.merge else ""
        return f"{self.sha[:SHORT_SHA]} “{self.subject[:80]}”{kind}"


@dataclass(frozen=True)
class Snapshot:
    """What the remote holds, as the last fetch saw it."""

    versions: list[Tag]
    rollback_tags: dict[str, Tag]
    head: Commit
    head_tree: str
    reachable: frozenset[str]
    current: Tag | None
    ahead: int
    rollback_tag: Tag | None

    def find(self, name: str) -> Tag | None:
        """Return the version tag called `name`."""
        return next((t for t in self.versions if t.name == name), None)


def parse_tag(line: str) -> Tag | None:
    """Build a tag from a for-each-ref line; tags of anything but a commit are skipped."""
    fields = line.split("\0")
    if len(fields) != len(TAG_FIELDS):
        return None
    name, kind, obj, peeled, tree, peeled_tree, date, peeled_date, created, subj, peeled_subj = (
        fields
    )
    if kind == "tag":
        if not peeled_tree:  # an annotated tag of a tree or blob
            return None
        obj, tree, date, subj = peeled, peeled_tree, peeled_date, peeled_subj
    elif kind != "commit":
        return None
    return Tag(name, obj, tree, parse_time(date), parse_time(created), subj)


def parse_time(value: str) -> datetime | None:
    """Read an ISO 8601 time as git prints it; None when absent or unreadable."""
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def is_version(name: str, pattern: str) -> bool:
    """Return True when a tag name is a version (and not a rollback tag)."""
    return (
        fnmatch.fnmatchcase(name, pattern)
        and not name.endswith(ROLLBACK_SUFFIX)
        and VERSION_PATTERN.fullmatch(name) is not None
    )


def newest_first(tag: Tag) -> tuple[float, list[tuple[int, int | str]]]:
    """Sort key: the commit's date, then version numbers compared as numbers."""
    when = tag.committed_at.timestamp() if tag.committed_at else 0.0
    parts = re.findall(r"\d+|[^\d]+", tag.name)
    return when, [(1, int(p)) if p.isdigit() else (0, p) for p in parts]


def current_of(versions: list[Tag], reachable: frozenset[str], tree: str) -> Tag | None:
    """The newest tag on the branch, or the tag whose files the head has exactly."""
    newest = next((t for t in versions if t.name in reachable), None)
    if newest is not None and newest.tree == tree:
        return newest
    same_files = next((t for t in versions if t.tree == tree), None)
    return same_files or newest


def newer_rollback_tag(rollback_tags: dict[str, Tag], current: Tag | None) -> Tag | None:
    """Return the rollback tag created last, when it is newer than the current version."""
    dated = [t for t in rollback_tags.values() if t.created_at is not None]
    if not dated:
        return None
    newest = max(dated, key=lambda t: t.created_at or datetime.min)
    if current is None or current.created_at is None:
        return newest
    return newest if newest.created_at and newest.created_at > current.created_at else None


def after(versions: list[Tag], current: Tag | None) -> Tag | None:
    """Return the version before `current` (the previous stable one)."""
    if current is None:
        return None
    index = versions.index(current)
    return versions[index + 1] if index + 1 < len(versions) else None


def when(tag: Tag, what: str = "committed") -> str:
    """Say when a tag's commit was made (or the tag created)."""
    moment = tag.created_at if what == "created" else tag.committed_at
    return f"{what} {stamp(moment)}" if moment else f"{what} at an unknown time"


def stamp(moment: datetime | None) -> str:
    """Return a time as a thread shows it."""
    return f"{moment:%Y-%m-%d %H:%M %Z}".rstrip() if moment else "at an unknown time"
