"""A Railway deployment as rollbot reads it, and which one serves, came before or is named.

What Railway documents, and this module relies on:

- ``deployments(input: {projectId, serviceId, environmentId}, first: N)`` lists a service's
  deployments; each has ``id status createdAt canRollback meta staticUrl``. ``meta`` is
  free-form JSON; it holds ``commitHash``/``commitMessage``/``branch`` for repository deploys and
  ``image`` for image deploys.
- A deployment goes INITIALIZING/QUEUED/WAITING -> BUILDING -> DEPLOYING -> SUCCESS (or
  FAILED; a running one may later crash: CRASHED). Once a newer one is live, older ones
  become REMOVING, then REMOVED: a deployment that served well yesterday reads REMOVED
  today. SLEEPING is a live deployment put to sleep by App Sleeping.

Choices where the docs are silent, written down here:

- The list's order is not documented (Railway's own CLI sorts it), so it is sorted by
  ``createdAt``, newest first.
- "Running now" is the newest SUCCESS or SLEEPING deployment. The previous stable one is the
  newest older deployment Railway lets us roll back to (``canRollback``) that once served:
  SUCCESS, SLEEPING or REMOVED (superseded). The API cannot tell a deployment removed after
  serving from one removed after crashing; the verification after the rollback catches that.

Versions are named by deployment id. A user may also name one by its commit's short sha
(7 characters) or its image tag when exactly one deployment Railway can roll back to carries
it; those aliases travel with the deployment's Version, so the engine accepts them. Messages
show a deployment by the name people know (what the user typed, else its image tag, else its
short commit) with the id beside it: "v1.2.3 (deployment 3f2a…)".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from providers.base import NotFound, Refused, Version
from providers.images import ImageRef

Json = dict[str, Any]

LIVE = frozenset({"SUCCESS", "SLEEPING"})
ONCE_LIVE = LIVE | {"REMOVED"}
ENDED_BADLY = frozenset({"FAILED", "CRASHED", "REMOVED", "REMOVING", "SKIPPED"})
IN_FLIGHT = frozenset(
    {"QUEUED", "WAITING", "INITIALIZING", "BUILDING", "DEPLOYING", "NEEDS_APPROVAL"}
)
SHORT_SHA = 7
HEX = re.compile(r"[0-9a-f]{7,40}")
# Docker's tag grammar, which fits the versions chat may name.
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class Deployment:
    """One Railway deployment as the API lists it."""

    id: str
    status: str
    created_at: datetime | None
    can_rollback: bool
    static_url: str | None = None
    meta: Json = field(default_factory=dict)

    @classmethod
    def parse(cls, node: Json) -> Deployment:
        """Build a deployment from a `deployments` edge node."""
        meta = node.get("meta")
        return cls(
            id=str(node["id"]),
            status=str(node.get("status") or "UNKNOWN"),
            created_at=_parse_time(node.get("createdAt")),
            can_rollback=bool(node.get("canRollback")),
            static_url=node.get("staticUrl") or None,
            meta=meta if isinstance(meta, dict) else {},
        )

    @property
    def commit(self) -> str:
        """Return the commit hash Railway recorded, lower case, or ''."""
        return str(self.meta.get("commitHash") or "").lower()

    @property
    def branch(self) -> str:
        """Return the branch Railway recorded for a repository deploy, or ''."""
        return str(self.meta.get("branch") or "")

    @property
    def image(self) -> str:
        """Return the image Railway recorded, or ''."""
        return str(self.meta.get("image") or "")

    @property
    def image_tag(self) -> str:
        """Return the tag of the image, or '' when there is none worth naming."""
        if not self.image:
            return ""
        tag = ImageRef.parse(self.image).tag
        return tag if tag != "latest" and TAG.fullmatch(tag) else ""

    @property
    def label(self) -> str:
        """Return the name people know it by: its image tag, else its short commit, else ''."""
        if self.image_tag:
            return self.image_tag
        return self.commit[:SHORT_SHA] if HEX.fullmatch(self.commit) else ""

    def aliases(self) -> list[str]:
        """Return the short names a user may give this deployment."""
        names = [self.commit[:SHORT_SHA]] if HEX.fullmatch(self.commit) else []
        if self.image_tag:
            names.append(self.image_tag)
        return names

    def answers_to(self, name: str) -> bool:
        """Return True when `name` is this deployment's short sha (or longer) or image tag."""
        lowered = name.lower()
        by_sha = HEX.fullmatch(lowered) is not None and self.commit.startswith(lowered)
        return by_sha or (bool(self.image_tag) and name == self.image_tag)

    def origin(self) -> str:
        """Say what the deployment runs: its commit and message, its image."""
        parts = []
        if self.commit:
            message = str(self.meta.get("commitMessage") or "").strip().splitlines()
            subject = f" “{message[0][:80]}”" if message else ""
            parts.append(f"commit {self.commit[:SHORT_SHA]}{subject}")
        if self.image:
            parts.append(f"image {self.image}")
        return ", ".join(parts) or "no commit or image recorded"

    def describe(self) -> str:
        """Say in one line which deployment this is."""
        return f"deployment {self.id} ({self.status}, {created_text(self)}, {self.origin()})"


def unknown(name: str, deployments: Sequence[Deployment], service_id: str) -> NotFound:
    """Say that no deployment among those read is `name`."""
    return NotFound(
        f"No deployment `{name}` among the last {len(deployments)} of Railway service "
        f"{service_id} in this environment (a deployment id, a short commit sha or an image "
        "tag is accepted)."
    )


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def newest_first(deployment: Deployment) -> float:
    """Sort key putting the newest deployment first (one without a time last)."""
    created = deployment.created_at
    return -created.timestamp() if created else 0.0


def created_text(deployment: Deployment) -> str:
    """Say when the deployment was created."""
    created = deployment.created_at
    return f"created {created:%Y-%m-%d %H:%M} UTC" if created else "creation time unknown"


def serving(deployments: Sequence[Deployment]) -> Deployment | None:
    """Return the newest live deployment."""
    return next((d for d in deployments if d.status in LIVE), None)


def _created_before(first: Deployment, second: Deployment) -> bool:
    if first.created_at is None or second.created_at is None:
        return False
    return first.created_at < second.created_at


def previous_stable(
    deployments: Sequence[Deployment], current: Deployment | None
) -> Deployment | None:
    """Return the newest older deployment that once served and can be rolled back to."""
    return next(
        (
            d
            for d in deployments
            if d.can_rollback
            and d.status in ONCE_LIVE
            and (current is None or _created_before(d, current))
        ),
        None,
    )


def newer_in_flight(
    deployments: Sequence[Deployment], current: Deployment | None
) -> list[Deployment]:
    """Return deployments still on their way that would replace the one running."""
    return [
        d
        for d in deployments
        if d.status in IN_FLIGHT and (current is None or _created_before(current, d))
    ]


def resolves_to(
    name: str, deployments: Sequence[Deployment], current: Deployment | None
) -> Deployment | None:
    """Return the deployment a name means; refuse an alias that fits several."""
    by_id = next((d for d in deployments if d.id == name), None)
    if by_id is not None:
        return by_id
    matches = [d for d in deployments if d.answers_to(name)]
    # Only deployments we could roll back to compete: a failed build of the same commit
    # does not make its alias ambiguous.
    eligible = [d for d in matches if d.can_rollback and d is not current]
    if len(eligible) > 1:
        ids = ", ".join(d.id for d in eligible)
        raise Refused(f"`{name}` fits several Railway deployments ({ids}); name one by its id.")
    if eligible:
        return eligible[0]
    # Nothing eligible: hand back the match, so the caller can say why it is refused.
    return matches[0] if matches else None


def versions(deployments: Sequence[Deployment]) -> list[Version]:
    """Return the deployments as versions, newest first, with their unambiguous aliases."""
    current = serving(deployments)
    previous = previous_stable(deployments, current)
    return [
        _version(
            deployment,
            current,
            previous,
            tuple(
                alias
                for alias in deployment.aliases()
                if _alias_of(alias, deployments, current) is deployment
            ),
        )
        for deployment in deployments
    ]


def served(deployment: Deployment) -> Version:
    """Return a deployment Railway serves as a version (the one a rollback made)."""
    return _version(deployment, deployment, None, ())


def _version(
    deployment: Deployment,
    current: Deployment | None,
    previous: Deployment | None,
    aliases: tuple[str, ...],
) -> Version:
    """Return a deployment as a version named by its id."""
    detail = f"{deployment.status}, {created_text(deployment)}, {deployment.origin()}"
    if not deployment.can_rollback:
        detail += "; Railway cannot roll back to it (canRollback: false)"
    return Version(
        name=deployment.id,
        created_at=deployment.created_at,
        current=deployment is current,
        previous_stable=deployment is previous,
        detail=detail,
        aliases=aliases,
        id_kind="deployment",
        label=deployment.label,
    )


def _alias_of(
    alias: str, deployments: Sequence[Deployment], current: Deployment | None
) -> Deployment | None:
    """Return the deployment an alias resolves to, or None when it is ambiguous."""
    try:
        return resolves_to(alias, deployments, current)
    except Refused:
        return None
