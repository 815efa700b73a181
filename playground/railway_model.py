"""The fake Railway's deployments, and the statuses a rollback's new deployment walks through.

A deployment made by `deploymentRollback` moves one status along its schedule every
`step_seconds`; when it goes live it may be rolled back to, and the one served before
becomes REMOVED, as Railway's docs say. One that fails before going live leaves the old
one serving.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Json = dict[str, Any]

LIVE = ("SUCCESS", "SLEEPING")


@dataclass
class FakeDeployment:
    """One deployment the fake holds."""

    id: str
    project_id: str
    service_id: str
    environment_id: str
    status: str
    created_at: datetime
    can_rollback: bool
    meta: Json
    # A deployment made by deploymentRollback walks these statuses, one per step.
    schedule: tuple[str, ...] = ()
    started: float = 0.0
    step_seconds: float = 0.0

    @classmethod
    def rollback_of(
        cls, target: FakeDeployment, schedule: tuple[str, ...], step_seconds: float
    ) -> FakeDeployment:
        """Return the new deployment deploymentRollback starts from the target's image."""
        return cls(
            id=str(uuid.uuid4()),
            project_id=target.project_id,
            service_id=target.service_id,
            environment_id=target.environment_id,
            status=schedule[0],
            created_at=datetime.now(UTC),
            can_rollback=False,
            meta={**target.meta, "reason": "rollback"},
            schedule=schedule,
            started=time.monotonic(),
            step_seconds=step_seconds,
        )

    @property
    def tag(self) -> str:
        """Return the tag of its image."""
        return str(self.meta.get("image", "")).rpartition(":")[2]

    def node(self) -> Json:
        """Return it as the GraphQL Deployment type."""
        stamp = _iso(self.created_at)
        return {
            "id": self.id,
            "status": self.status,
            "createdAt": stamp,
            "updatedAt": stamp,
            "canRollback": self.can_rollback,
            "canRedeploy": self.status in (*LIVE, "FAILED", "CRASHED", "REMOVED"),
            "meta": self.meta,
            "staticUrl": f"api-{self.id[:8]}.up.railway.app",
            "url": None,
            "projectId": self.project_id,
            "serviceId": self.service_id,
            "environmentId": self.environment_id,
        }


def ordered(
    deployments: list[FakeDeployment], *, newest_first: bool = True
) -> list[FakeDeployment]:
    """Return the deployments sorted by creation time."""
    return sorted(deployments, key=lambda d: d.created_at, reverse=newest_first)


def advance(deployments: list[FakeDeployment]) -> None:
    """Move deployments made by deploymentRollback along their schedule."""
    for deployment in ordered(deployments, newest_first=False):
        if not deployment.schedule:
            continue
        step = int((time.monotonic() - deployment.started) / deployment.step_seconds)
        status = deployment.schedule[min(step, len(deployment.schedule) - 1)]
        if status == deployment.status:
            continue
        deployment.status = status
        if status in LIVE:
            deployment.can_rollback = True
            _retire_older_than(deployments, deployment)


def _retire_older_than(deployments: list[FakeDeployment], live: FakeDeployment) -> None:
    for other in deployments:
        if other is not live and other.status in LIVE and other.created_at < live.created_at:
            other.status = "REMOVED"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
