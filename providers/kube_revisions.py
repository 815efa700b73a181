"""A workload's revisions, as `kubectl rollout history` shows them, and their version names.

A Deployment's revisions are its ReplicaSets (annotation `deployment.kubernetes.io/revision`);
a StatefulSet's and a DaemonSet's are its ControllerRevisions (`revision`). Each is named by
the image tag of the configured container (`registry/web:v1.2.3` -> `v1.2.3`); when two
revisions share a tag the newest keeps it and older ones are `v1.2.3+r4`. Every revision
also answers to its number (`/rollback web 2`), as `kubectl rollout undo --to-revision`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from providers.base import Version
from providers.images import ImageRef

Json = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABEL = "pod-template-hash"
# Annotations of a ReplicaSet that belong to it, not to the Deployment: `kubectl rollout
# undo` leaves them out when it copies the others back.
RS_OWN_ANNOTATIONS = frozenset(
    {
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)
KINDS = ("Deployment", "StatefulSet", "DaemonSet")


@dataclass(frozen=True)
class Revision:
    """One revision of a workload: its number, pod template and where it is kept."""

    number: int
    source: str  # the ReplicaSet or ControllerRevision holding it
    created: datetime | None
    change_cause: str
    # The pod template (holds environment values: kept out of repr and comparisons).
    template: Json = field(repr=False, compare=False)
    # A ReplicaSet's annotations, which go back with its template.
    annotations: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def image(self, container: str | None) -> str | None:
        """The image of the named container (the first one when None)."""
        return image_of(self.template, container)


def image_of(template: Json, container: str | None) -> str | None:
    """The image of a pod template's container `container` (the first one when None)."""
    containers = (template.get("spec") or {}).get("containers") or []
    chosen = next((c for c in containers if container in (None, c.get("name"))), None)
    return str(chosen["image"]) if chosen and chosen.get("image") else None


def owned_by(item: Json, owner: Json) -> bool:
    """Whether an object's controller owner reference is `owner` (by uid)."""
    uid = owner["metadata"]["uid"]
    refs = (item.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def from_replica_sets(deployment: Json, replica_sets: list[Json]) -> list[Revision]:
    """A Deployment's revisions from its ReplicaSets, newest first."""
    found = []
    for rs in replica_sets:
        meta = rs.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        if not owned_by(rs, deployment) or not str(annotations.get(REVISION, "")).isdigit():
            continue
        template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
        labels = (template.get("metadata") or {}).get("labels") or {}
        labels.pop(HASH_LABEL, None)
        found.append(
            Revision(
                number=int(annotations[REVISION]),
                source=f"ReplicaSet {meta.get('name')}",
                created=_time(meta.get("creationTimestamp")),
                change_cause=str(annotations.get(CHANGE_CAUSE) or ""),
                template=template,
                annotations={k: v for k, v in annotations.items() if k not in RS_OWN_ANNOTATIONS},
            )
        )
    return sorted(found, key=lambda r: r.number, reverse=True)


def from_controller_revisions(workload: Json, revisions: list[Json]) -> list[Revision]:
    """A StatefulSet's or DaemonSet's revisions from its ControllerRevisions, newest first."""
    found = []
    for item in revisions:
        if not owned_by(item, workload):
            continue
        meta = item.get("metadata") or {}
        patch = item.get("data") or {}
        template = copy.deepcopy(((patch.get("spec") or {}).get("template")) or {})
        template.pop("$patch", None)
        found.append(
            Revision(
                number=int(item.get("revision") or 0),
                source=f"ControllerRevision {meta.get('name')}",
                created=_time(meta.get("creationTimestamp")),
                change_cause=str((meta.get("annotations") or {}).get(CHANGE_CAUSE) or ""),
                template=template,
            )
        )
    return sorted(found, key=lambda r: r.number, reverse=True)


@dataclass
class History:
    """A workload's revisions, which one is current, and the name of each."""

    revisions: list[Revision]
    current: Revision
    container: str | None
    names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for revision in self.revisions:  # newest first: the newest keeps the bare tag
            tag = _tag(revision.image(self.container))
            name = tag if tag and tag not in seen else None
            if tag:
                seen.add(tag)
            self.names[revision.number] = name or (
                f"{tag}+r{revision.number}" if tag else f"revision {revision.number}"
            )

    def name(self, revision: Revision) -> str:
        """The version name people use for a revision."""
        return self.names[revision.number]

    def previous(self) -> Revision | None:
        """The newest revision older than the current one."""
        return next((r for r in self.revisions if r.number < self.current.number), None)

    def versions(self) -> list[Version]:
        """The revisions as versions, newest first, current and previous marked."""
        previous = self.previous()
        return [
            Version(
                name=self.name(r),
                created_at=r.created,
                current=r is self.current,
                previous_stable=r is previous,
                detail=_detail(r, self.container),
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
        return ", ".join(f"{self.name(r)} (revision {r.number})" for r in self.revisions)


def current_of(
    kind: str, workload: Json, revisions: list[Revision]
) -> tuple[Revision, list[Revision]]:
    """The revision whose template the workload holds now, and the revisions with it.

    The revision annotations and the status lag a change until the controller acts on
    it: the template decides. A template no revision holds yet is the newest revision,
    not yet recorded (number one above the newest).
    """
    template = (workload.get("spec") or {}).get("template") or {}
    for revision in revisions:
        if revision.template == template:
            return revision, revisions
    name = workload["metadata"]["name"]
    pending = Revision(
        number=(revisions[0].number if revisions else 0) + 1,
        source=f"{kind} {name}'s template, not yet recorded by its controller",
        created=None,
        change_cause="",
        template=copy.deepcopy(template),
    )
    return pending, [pending, *revisions]


def _tag(image: str | None) -> str | None:
    if image is None:
        return None
    tag = ImageRef.parse(image).tag
    return None if tag == "latest" and ":latest" not in image else tag


def _detail(revision: Revision, container: str | None) -> str:
    parts = [f"revision {revision.number}", revision.image(container) or "no image"]
    if revision.change_cause:
        parts.append(revision.change_cause)
    return "; ".join(parts)


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
