"""Which Vercel deployments are a way back, and which one a version name means.

Only deployments that served production are offered: READY, target production, not a
staged build (readySubstate STAGED) nor a rolling release's canary (ROLLING); for an
instant rollback also only those Vercel marks ``isRollbackCandidate``. Naming another one
is refused with its reason.
"""

from __future__ import annotations

from providers.base import NotFound, Refused
from providers.vercel_api import NEVER_SERVED, Deployment, Snapshot, version_key

LISTED_NAMES = 10


def refusal(snap: Snapshot, deployment: Deployment, mode: str) -> str | None:
    """Say why a listed deployment is no way back, or None when it is one."""
    if snap.production is not None and deployment.uid == snap.production.uid:
        return None
    if deployment.substate in NEVER_SERVED:
        return f"it is {NEVER_SERVED[deployment.substate]}"
    if mode == "rollback" and deployment.rollback_candidate is False:
        return (
            "it is not an instant rollback candidate (isRollbackCandidate false: on the "
            "Hobby plan only the previous production deployment is); a `mode: promote` "
            "target can still promote it"
        )
    return None


def offered(snap: Snapshot, mode: str) -> list[Deployment]:
    """Return the deployments that are a way back (and the current one), newest first."""
    return [d for d in snap.deployments if refusal(snap, d, mode) is None]


def previous_stable(snap: Snapshot, offered: list[Deployment]) -> Deployment | None:
    """Return the newest offered deployment older than the one production serves."""
    if snap.production is None:
        return None
    current = snap.production
    return next(
        (d for d in offered if d.uid != current.uid and d.created_ms < current.created_ms),
        None,
    )


def find(deployments: list[Deployment], names: dict[str, str], target: str) -> Deployment | None:
    """Return the deployment meant by a version name, meta version, uid or url, or None."""
    wanted = version_key(target)
    return next(
        (
            d  # newest first: a redeploy wins over its original
            for d in deployments
            if target in (d.uid, d.url, names.get(d.uid))
            or (d.meta_version and version_key(d.meta_version) == wanted)
        ),
        None,
    )


def unknown(snap: Snapshot, target: str, mode: str, meta_key: str) -> NotFound:
    """Say that no READY production deployment is `target`, naming those that are."""
    names = [snap.name(d) for d in offered(snap, mode)]
    return NotFound(
        f"No READY production deployment of Vercel project `{snap.project_name}` is "
        f"`{target}` (by meta.{meta_key}, id or url). "
        f"Available: {', '.join(names[:LISTED_NAMES]) or 'none'}."
    )


def resolve(snap: Snapshot, target: str, mode: str, meta_key: str) -> Deployment:
    """Find the deployment meant by a version name, meta version, uid or url."""
    found = find(snap.deployments, snap.names, target)
    if found is None:
        raise unknown(snap, target, mode, meta_key)
    why = refusal(snap, found, mode)
    if why is not None:
        raise Refused(
            f"{found.link} ({snap.name(found)}) is no way back for Vercel project "
            f"`{snap.project_name}`: {why}."
        )
    return found
