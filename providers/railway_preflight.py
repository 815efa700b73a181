"""Before approval: which Railway deployment runs and which would, whether Railway takes it.

Reads only (the deployments query, retried as every read is). Checks, by the stable name a
break-glass approval gives:

- ``service-found``: the service's deployments in the environment could be read (FAIL when
  not: an unknown service, environment or token); WARN when none of them serves now.
- ``deployment-redeployable``: Railway's docs roll back to a deployment that ran (SUCCESS,
  SLEEPING, or REMOVED after a newer one replaced it) whose image Railway still keeps
  (``canRollback``); FAILED or CRASHED, one still on its way, or the one serving now FAILs.
- ``deploy-in-flight``: no newer deployment is on its way (WARN: if it finishes it replaces
  the rollback).

A deployment is exactly its id with the commit and image Railway recorded; what changes is
that commit (and branch) and image, and whether the target is newer. Railway restores the
target's variables too, but its API gives variables only with their values, so no names
are listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from providers.base import ProviderError
from providers.capabilities import Identity, PreflightCheck, PreflightReport
from providers.preflight_lines import (
    SHORT_SHA,
    commit_change,
    direction,
    failed,
    one_line,
    passed,
    warned,
)
from providers.railway_client import RailwayClient
from providers.railway_deployments import (
    ONCE_LIVE,
    Deployment,
    newer_in_flight,
    resolves_to,
    serving,
    unknown,
)

if TYPE_CHECKING:
    from providers.railway import RailwaySettings

SERVICE = "service-found"
REDEPLOYABLE = "deployment-redeployable"
IN_FLIGHT = "deploy-in-flight"
NEVER_RAN = frozenset({"FAILED", "CRASHED"})


def identity(deployment: Deployment) -> Identity:
    """Return a deployment as people know it (its id) and exactly what it runs."""
    parts = [f"commit {deployment.commit[:SHORT_SHA]}"] if deployment.commit else []
    parts += [f"image {deployment.image}"] if deployment.image else []
    exact = f"{deployment.id} ({', '.join(parts)})" if parts else deployment.id
    build = deployment.commit or deployment.image or None
    return Identity(version=deployment.id, exact=exact, build=build)


async def preflight(
    client: RailwayClient, settings: RailwaySettings, target: str
) -> PreflightReport:
    """Check that Railway can roll back to `target` and say what changes, changing nothing."""
    try:
        deployments = await client.deployments()
    except ProviderError as exc:
        # Fail closed: without the list nothing says the target can run.
        return PreflightReport(
            current=None,
            target=Identity(version=target, exact=f"{target} (not read from Railway)"),
            checks=[failed(SERVICE, f"could not be read: {one_line(exc.message)}")],
        )
    current = serving(deployments)
    chosen = resolves_to(target, deployments, current)
    if chosen is None:
        raise unknown(target, deployments, settings.service_id)
    changes: list[str | None] = []
    if current is not None and current.id != chosen.id:
        changes = [
            commit_change(current.commit, current.branch, chosen.commit, chosen.branch),
            _image_change(current, chosen),
            direction(f"deployment {current.id}", current.created_at, chosen.id, chosen.created_at),
        ]
    return PreflightReport(
        current=identity(current) if current is not None else None,
        target=identity(chosen),
        checks=[
            _service(settings, deployments, current),
            _redeployable(chosen, current),
            _in_flight(deployments, current),
        ],
        changes=[line for line in changes if line],
    )


def _service(
    settings: RailwaySettings, deployments: Sequence[Deployment], current: Deployment | None
) -> PreflightCheck:
    where = f"service {settings.service_id} in environment {settings.environment_id}"
    if current is None:
        return warned(SERVICE, f"{where}: no deployment serves now (none is SUCCESS or SLEEPING)")
    return passed(SERVICE, f"{where}: Railway serves deployment {current.id}")


def _redeployable(chosen: Deployment, current: Deployment | None) -> PreflightCheck:
    status = chosen.status
    if current is not None and chosen.id == current.id:
        return failed(REDEPLOYABLE, "Railway serves it now: there is nothing to roll back")
    if status in NEVER_RAN:
        return failed(REDEPLOYABLE, f"it ended {status}: it never ran well")
    if not chosen.can_rollback:
        return failed(
            REDEPLOYABLE,
            "its canRollback is false (older than the plan's retention, or it never built)",
        )
    if status in ONCE_LIVE:
        return passed(REDEPLOYABLE, f"{status}, canRollback true: Railway redeploys its image")
    return failed(REDEPLOYABLE, f"it is {status}: a way back is one that ran (SUCCESS or REMOVED)")


def _in_flight(deployments: Sequence[Deployment], current: Deployment | None) -> PreflightCheck:
    newer = newer_in_flight(deployments, current)
    if not newer:
        return passed(IN_FLIGHT, "no newer deployment is on its way")
    more = f" (and {len(newer) - 1} more)" if len(newer) > 1 else ""
    return warned(
        IN_FLIGHT,
        f"deployment {newer[0].id} is {newer[0].status}{more}, newer than the one running: "
        "if it finishes it replaces the rollback",
    )


def _image_change(current: Deployment, chosen: Deployment) -> str | None:
    if not current.image or not chosen.image or current.image == chosen.image:
        return None
    return f"image {current.image} -> {chosen.image}"
