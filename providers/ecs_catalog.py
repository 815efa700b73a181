"""An ECS task-definition family's revisions and the version names they go by.

Versions are the family's ACTIVE revisions, named by the image tag of the configured
container (`repo/app:v1.2.3` -> `v1.2.3`). When several revisions share a tag, the newest
keeps the bare tag and older ones are named `v1.2.3+r41`; a revision whose image has no
usable tag is named by its number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from providers.base import Refused

Json = dict[str, Any]

TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# `arn:...:task-definition/family:7` or `family:7` (moto stores what update_service got).
TASK_DEFINITION = re.compile(r"(?:.*/)?(?P<family>[^/:]+):(?P<number>\d+)$")


@dataclass(frozen=True)
class Revision:
    """One task-definition revision and the image of the configured container."""

    family: str
    number: int
    image: str | None
    status: str = "ACTIVE"
    registered_at: datetime | None = None
    arn: str = ""
    # describe_task_definition's answer, for preflight's comparison; it holds environment
    # values, so it is kept out of repr (and logs) and of comparisons.
    definition: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, definition: Json, container: str) -> Revision:
        """Read a describe_task_definition answer, with the image of `container`."""
        containers = definition.get("containerDefinitions") or []
        image = next((c.get("image") for c in containers if c.get("name") == container), None)
        return cls(
            family=str(definition["family"]),
            number=int(definition["revision"]),
            image=image,
            status=str(definition.get("status") or "ACTIVE"),
            registered_at=definition.get("registeredAt"),
            arn=str(definition.get("taskDefinitionArn") or ""),
            definition=definition,
        )

    @property
    def ref(self) -> str:
        """Return `family:number`, what update_service takes."""
        return f"{self.family}:{self.number}"

    @property
    def tag(self) -> str | None:
        """Return the image tag when it can name a version."""
        if self.image is None:
            return None
        name = self.image.split("@", 1)[0]
        _, sep, tag = name.rpartition(":")
        if not sep or "/" in tag or not TAG.fullmatch(tag):
            return None
        return tag


@dataclass
class Catalog:
    """The service as described now, and its family's revisions with their version names."""

    family: str
    service: Json
    current: Revision
    revisions: list[Revision]
    names: dict[int, str] = field(default_factory=dict)

    def name(self, number: int) -> str:
        """Return the version name of a revision (its number when it is not listed)."""
        return self.names.get(number, str(number))

    def label(self, number: int) -> str:
        """Return `family:number (name)` for messages."""
        name = self.name(number)
        ref = f"{self.family}:{number}"
        return ref if name == str(number) else f"{ref} ({name})"

    def described(self, revision: Revision) -> str:
        """Return `family:number (name, image ...)` for plans and progress."""
        name = self.name(revision.number)
        named = "" if name == str(revision.number) else f"{name}, "
        return f"{revision.ref} ({named}image {revision.image or 'unknown'})"

    def label_of(self, task_definition: str) -> str:
        """Label a task-definition ARN or `family:number` as the service reports it."""
        match = TASK_DEFINITION.match(task_definition)
        if match is None or match["family"] != self.family:
            return task_definition or "no task definition"
        return self.label(int(match["number"]))


def parse_task_definition(value: str) -> tuple[str, int]:
    """Split a task-definition ARN or `family:number` into family and revision number."""
    match = TASK_DEFINITION.match(value)
    if match is None:
        raise Refused(f"Cannot read the task definition `{value}` (expected family:revision).")
    return match["family"], int(match["number"])


def version_names(revisions: list[Revision]) -> dict[int, str]:
    """Name revisions by image tag; older revisions sharing a tag get `+r<number>`."""
    names: dict[int, str] = {}
    seen: set[str] = set()
    for revision in sorted(revisions, key=lambda r: r.number, reverse=True):
        tag = revision.tag
        if tag is None:
            names[revision.number] = str(revision.number)
        elif tag in seen:
            names[revision.number] = f"{tag}+r{revision.number}"
        else:
            names[revision.number] = tag
            seen.add(tag)
    return names


def previous_revision(catalog: Catalog) -> Revision | None:
    """Return the newest listed revision older than the current one."""
    older = [r for r in catalog.revisions if r.number < catalog.current.number]
    return max(older, key=lambda r: r.number, default=None)
