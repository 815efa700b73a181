"""Before approval: which Vercel deployment serves and which would, whether Vercel takes it.

Reads only (the reads retried as every read is). Checks, by the stable name a break-glass
approval gives:

- ``deployment-ready``: the target is READY; a BUILDING, ERROR or CANCELED one cannot serve.
- ``rollback-candidate``: the target served production and is a way back in this mode
  (``isRollbackCandidate`` for an instant rollback); not what production serves already.
- ``rolling-release``: no rolling release is active (WARN: the target is its base, so the
  rollback aborts it; FAIL: any other target, which the provider refuses, or the release
  could not be read).
- ``alias-job``: no rollback or promote is running already (WARN: Vercel may refuse one).

A deployment is exactly its id and the commit its Git integration recorded; what changes is
that commit (and branch), and whether the target is newer than what serves.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from providers.base import NotFound, ProviderError
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
from providers.vercel_api import RUNNING, Deployment, RollingRelease, Snapshot, names_of
from providers.vercel_candidates import find, refusal, unknown
from providers.vercel_client import VercelClient

if TYPE_CHECKING:
    from providers.vercel import VercelSettings

READY = "deployment-ready"
CANDIDATE = "rollback-candidate"
ROLLING = "rolling-release"
JOB = "alias-job"


async def identity_now(client: VercelClient) -> Identity:
    """Return exactly what production serves now, asked from Vercel."""
    snap = await client.snapshot()
    if snap.production is None:
        raise NotFound(f"Vercel project `{snap.project_name}` has no production deployment.")
    return _serving(snap, snap.production)


async def preflight(client: VercelClient, settings: VercelSettings, target: str) -> PreflightReport:
    """Check that `target` can serve production and say exactly what changes, changing nothing."""
    snap = await client.snapshot(rolling=False)
    rolling_error: ProviderError | None = None
    try:
        snap = dataclasses.replace(snap, rolling=await client.rolling(snap.project_id))
    except ProviderError as exc:
        rolling_error = exc
    deployment, name = await _target(client, settings, snap, target)
    current = snap.production
    checks = [
        _ready(deployment),
        _candidate(snap, deployment, settings.mode),
        _rolling(snap, snap.rolling, deployment, rolling_error),
        _job(snap),
    ]
    changes: list[str | None] = []
    if current is not None and current.uid != deployment.uid:
        changes = [
            commit_change(current.commit, current.branch, deployment.commit, deployment.branch),
            direction(snap.name(current), current.created, name, deployment.created),
        ]
    return PreflightReport(
        current=_serving(snap, current) if current is not None else None,
        target=Identity(version=name, exact=_exact(deployment), build=deployment.commit or None),
        checks=checks,
        changes=[line for line in changes if line],
    )


async def _target(
    client: VercelClient, settings: VercelSettings, snap: Snapshot, target: str
) -> tuple[Deployment, str]:
    """Find the deployment `target` names, also among those that are not READY production."""
    found = find(snap.deployments, snap.names, target)
    if found is not None:
        return found, snap.name(found)
    # Not a READY production deployment: the checks say why, if it is one at all.
    recent = await client.recent(snap.project_id)
    names = names_of(recent)
    found = find(recent, names, target)
    if found is None:
        raise unknown(snap, target, settings.mode, settings.version_meta_key)
    return found, names[found.uid]


def _exact(deployment: Deployment) -> str:
    commit = deployment.commit[:SHORT_SHA]
    return f"{deployment.uid} (commit {commit})" if commit else deployment.uid


def _serving(snap: Snapshot, production: Deployment) -> Identity:
    """Return what serves production, with the canary of a rolling release beside it."""
    exact = _exact(production)
    if snap.rolling is not None:
        exact += f"; rolling release canary {snap.rolling.canary_id}"
    return Identity(version=snap.name(production), exact=exact, build=production.commit or None)


def _ready(deployment: Deployment) -> PreflightCheck:
    if deployment.state != "READY":
        return failed(READY, f"{deployment.uid} is {deployment.state}, not READY: it cannot serve")
    created = f"{deployment.created:%Y-%m-%d %H:%M} UTC"
    return passed(READY, f"{deployment.uid} is READY (created {created})")


def _candidate(snap: Snapshot, deployment: Deployment, mode: str) -> PreflightCheck:
    production = snap.production
    if production is not None and deployment.uid == production.uid:
        if snap.rolling is not None and snap.rolling.current_id == deployment.uid:
            return passed(CANDIDATE, "it is the rolling release's base: rolling back aborts it")
        return failed(CANDIDATE, "production serves it already: there is nothing to roll back")
    if deployment.target != "production":
        kind = f"a {deployment.target} deployment" if deployment.target else "a preview deployment"
        return failed(CANDIDATE, f"{kind}: it never served production")
    if deployment.state != "READY":
        return failed(CANDIDATE, f"it is {deployment.state}: only a READY deployment is a way back")
    why = refusal(snap, deployment, mode)
    if why is not None:
        return failed(CANDIDATE, why[0].upper() + why[1:])
    if mode == "promote":
        return passed(CANDIDATE, "a production deployment; `promote` needs no isRollbackCandidate")
    if deployment.rollback_candidate is None:
        return warned(CANDIDATE, "Vercel did not say whether it is a rollback candidate")
    return passed(CANDIDATE, "Vercel marks it isRollbackCandidate: it served production")


def _rolling(
    snap: Snapshot,
    rolling: RollingRelease | None,
    deployment: Deployment,
    error: ProviderError | None,
) -> PreflightCheck:
    if error is not None:
        return failed(
            ROLLING,
            f"the rolling release could not be read ({one_line(error.message)}); "
            "an active one refuses any target but its base",
        )
    if rolling is None:
        return passed(ROLLING, "no rolling release is active")
    if deployment.uid == rolling.current_id:
        return warned(
            ROLLING,
            f"a rolling release of {rolling.canary_link} has {rolling.share()}: "
            "rolling back to its base aborts it",
        )
    return failed(
        ROLLING,
        f"a rolling release of {rolling.canary_link} has {rolling.share()}: only its base "
        f"{snap.named(rolling.current_id)} is a way back until it ends",
    )


def _job(snap: Snapshot) -> PreflightCheck:
    job = snap.job or {}
    if job.get("jobStatus") in RUNNING:
        return warned(
            JOB,
            f"a {job.get('type')} to {snap.named(job.get('toDeploymentId'))} is "
            f"{job.get('jobStatus')}: Vercel may refuse a second one",
        )
    return passed(JOB, "no rollback or promote is running")
