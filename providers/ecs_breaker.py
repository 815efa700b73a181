"""What ECS's deployment circuit breaker did to a service, read from describe_services.

While the breaker rolls back, the PRIMARY deployment is the rollback (rolloutState
IN_PROGRESS, rolloutStateReason "ECS deployment circuit breaker: rolling back to
deploymentId ecs-svc/...") and the failed one is still listed ACTIVE with rolloutState
FAILED. Once the rollback completes only it remains; the service events keep
"(service x) (deployment ecs-svc/...) deployment failed: <why>." and "rolling back".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

Json = dict[str, Any]

ROLLING_BACK = "ECS deployment circuit breaker: rolling back"
FAILED_EVENT = re.compile(r"\(deployment (?P<id>ecs-svc/[^)\s]+)\) deployment failed: (?P<why>.+)")
# The rollback deployment starts when the failure is logged; a PRIMARY deployment created
# well after the failure event is someone's later deployment, not ECS's rollback.
SAME_MOMENT = timedelta(minutes=5)


@dataclass(frozen=True)
class BreakerRollback:
    """ECS's own rollback: where it goes, what failed, why and when."""

    to: str
    failed: str | None
    failed_deployment: str | None
    why: str
    at: datetime | None
    in_progress: bool

    @property
    def when(self) -> str:
        """Return the time of the rollback as people read it in a thread."""
        return f"{self.at:%H:%M} UTC" if self.at else "an unknown time"

    def cause(self) -> str:
        """Say which deployment failed and why."""
        deployment = (
            f"deployment {self.failed_deployment}" if self.failed_deployment else "a deployment"
        )
        return f"{deployment} failed: {self.why}"


def breaker_rollback(service: Json) -> BreakerRollback | None:
    """Return the rollback ECS's circuit breaker runs or ran last, if the service shows one."""
    deployments = service.get("deployments") or []
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    if primary is None:
        return None
    failed = next(
        (d for d in deployments if d is not primary and d.get("rolloutState") == "FAILED"), None
    )
    event = _failure_event(service)
    why = _why(failed, event)
    reason = str(primary.get("rolloutStateReason") or "")
    if reason.startswith(ROLLING_BACK) and primary.get("rolloutState") == "IN_PROGRESS":
        return BreakerRollback(
            to=str(primary.get("taskDefinition") or ""),
            failed=str(failed.get("taskDefinition")) if failed else None,
            failed_deployment=str(failed.get("id")) if failed else (event or {}).get("id"),
            why=why,
            at=_time(primary.get("createdAt")),
            in_progress=True,
        )
    if event is None:
        return None
    at, created = event["at"], _time(primary.get("createdAt"))
    if at is None or (created is not None and created > at + SAME_MOMENT):
        return None
    return BreakerRollback(
        to=str(primary.get("taskDefinition") or ""),
        failed=str(failed.get("taskDefinition")) if failed else None,
        failed_deployment=event["id"],
        why=why,
        at=at,
        in_progress=False,
    )


def _failure_event(service: Json) -> dict[str, Any] | None:
    """Return the newest "deployment failed" service event (ECS lists the newest first)."""
    for event in service.get("events") or []:
        match = FAILED_EVENT.search(str(event.get("message") or ""))
        if match:
            return {
                "id": match["id"],
                "why": match["why"].rstrip("."),
                "at": _time(event.get("createdAt")),
            }
    return None


def _why(failed: Json | None, event: dict[str, Any] | None) -> str:
    if event is not None:
        return str(event["why"])
    reason = str((failed or {}).get("rolloutStateReason") or "no reason given")
    return reason.removeprefix("ECS deployment circuit breaker: ").rstrip(".")


def _time(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None
