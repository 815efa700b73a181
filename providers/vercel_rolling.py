"""An active Vercel rolling release, undone the documented way: by aborting it.

Rolling back to the release's current (base) deployment aborts the release, which sends
all traffic back there. Any other target is refused while the release runs: an alias job
would race the rollout.
"""

from __future__ import annotations

import time

import structlog

from providers.base import Outcome, Plan, Progress, ProviderError, Refused, say
from providers.vercel_api import ABORT_PATH, Deployment, RollingRelease, Snapshot
from providers.vercel_client import VercelClient

log = structlog.get_logger(__name__)


def check_rolling(snap: Snapshot, rolling: RollingRelease, target: Deployment) -> None:
    """Refuse any target but the release's current deployment while the release runs."""
    if target.uid == rolling.current_id:
        return
    base = snap.named(rolling.current_id)
    raise Refused(
        f"A rolling release of {rolling.canary_link} is active on Vercel project "
        f"`{snap.project_name}` ({rolling.share()}; the rest goes to {base}). Roll back "
        f"to {base} instead, which aborts the release, or abort or complete it in Vercel "
        "first (`vercel rolling-release abort`).",
        target_state=snap.describe(),
    )


def plan_abort(
    snap: Snapshot, rolling: RollingRelease, deployment: Deployment, timeout_seconds: float
) -> Plan:
    """Describe the abort that would send all traffic back to `deployment`, changing nothing."""
    check_rolling(snap, rolling, deployment)
    steps = [
        f"Abort the active rolling release of {rolling.canary_link} "
        f"({rolling.share()}) so {snap.named(deployment.uid)} serves all traffic "
        f"again: POST {ABORT_PATH.format(project=snap.project_id)} once; it is never "
        "retried.",
        f"Wait up to {timeout_seconds:g} s for Vercel to show the rolling release ABORTED.",
    ]
    return Plan(steps=steps)


async def abort_rolling(
    client: VercelClient,
    snap: Snapshot,
    rolling: RollingRelease,
    deployment: Deployment,
    progress: Progress,
    timeout_seconds: float,
) -> Outcome:
    """Abort the active rolling release so its current deployment serves all traffic."""
    check_rolling(snap, rolling, deployment)
    started = time.monotonic()
    path = ABORT_PATH.format(project=snap.project_id)
    await say(
        progress,
        f"A rolling release of {rolling.canary_link} has {rolling.share()}; aborting it "
        f"so {snap.named(deployment.uid)} serves all traffic: POST {path}",
    )

    async def ended() -> bool:
        try:
            return await client.rolling(snap.project_id) != rolling
        except ProviderError:
            return False

    body = {"canaryDeploymentId": rolling.canary_id}
    await client.mutate(path, "aborting the rolling release", {}, body, ended, "rolling-release")

    async def check() -> bool | None:
        return True if await client.rolling(snap.project_id, retry=False) is None else None

    def late() -> str:
        return (
            f"Vercel accepted the abort, but the rolling release of {rolling.canary_link} "
            f"still shows ACTIVE after {timeout_seconds:g} s."
        )

    await client.watch(check, late, progress)
    seconds = time.monotonic() - started
    log.info("vercel.rolling_release_aborted", project=snap.project_name, seconds=seconds)
    return Outcome(
        summary=f"Vercel aborted the rolling release of {rolling.canary_link}: "
        f"{snap.named(deployment.uid)} serves all traffic of `{snap.project_name}` again "
        f"({seconds:.1f} s)."
    )
