"""Vercel provider: point production back at an earlier production deployment.

The API it relies on is described in `providers/vercel_api.py`; its calls are made by
`providers/vercel_client.py`. Choices made here:

- Only deployments that served production are offered: READY, target production, not
  a staged build (readySubstate STAGED) nor a rolling release's canary (ROLLING); for an
  instant rollback also only those Vercel marks ``isRollbackCandidate``. Naming another
  one is refused with its reason (`providers/vercel_candidates.py`).
- An active rolling release is undone the documented way: rolling back to its current
  (base) deployment aborts the release, which sends all traffic back there. Any other
  target is refused while the release runs: an alias job would race the rollout
  (`providers/vercel_rolling.py`).
- The mutation (rollback, promote or abort) is sent once. When its answer is lost (a
  timeout, a closed connection, a 5xx or a proxy's page) Vercel is asked what it did.
- Waiting for the alias job, a rate limit or a failed read only slows the watch down
  (Retry-After honoured, jittered backoff); the deadline alone ends it.
"""

from __future__ import annotations

import time
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    NotFound,
    Outcome,
    Plan,
    Progress,
    ProviderError,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
    Version,
    say,
    sentence,
)
from providers.capabilities import FreezeRecord, Identity, PreflightReport
from providers.vercel_api import (
    MUTATION_PATHS,
    RUNNING,
    Deployment,
    Json,
    Snapshot,
    is_ours,
    label_of,
    production_of,
)
from providers.vercel_candidates import offered, previous_stable, resolve
from providers.vercel_client import VercelClient
from providers.vercel_freeze import vercel_freezer
from providers.vercel_preflight import identity_now, preflight
from providers.vercel_rolling import abort_rolling, plan_abort

log = structlog.get_logger(__name__)


class VercelSettings(BaseModel):
    """Settings of a `vercel` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["vercel"]
    api_url: str = Field(default="https://api.vercel.com", description="REST API base URL.")
    token_env: str = Field(default="VERCEL_TOKEN", description="Variable holding the token.")
    team_id: str | None = Field(default=None, description="Team id (teamId query parameter).")
    project: str = Field(description="Project id or name.")
    poll_interval_seconds: float = Field(default=3, gt=0, description="Alias job status pace.")
    promote_timeout_seconds: float = Field(
        default=300, gt=0, description="How long the rollback may take to finish."
    )
    mode: Literal["rollback", "promote"] = Field(
        default="rollback",
        description=(
            "rollback: Vercel's instant rollback (for deployments that served production); "
            "promote: `vercel promote`, as the rollback guide does it."
        ),
    )
    version_meta_key: str = Field(
        default="version",
        description="Deployment meta key holding the release version (`vercel ls --meta`).",
    )
    history: int = Field(
        default=20,
        ge=1,
        le=100,
        description="How many recent READY production deployments to offer (one API page).",
    )
    request_timeout_seconds: float = Field(
        default=10, gt=0, description="Timeout of one API request."
    )

    def secret_variables(self) -> dict[str, str]:
        """Name the variable that holds the token."""
        return {"token_env": self.token_env}


class VercelProvider:
    """Roll a Vercel project's production back to an earlier deployment."""

    def __init__(self, settings: VercelSettings) -> None:
        self._settings = settings
        self._client = VercelClient(settings)
        self._freezer = vercel_freezer(self._client, settings)

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the version production serves now."""
        snap = await self._client.snapshot()
        if snap.production is None:
            raise NotFound(f"Vercel project `{snap.project_name}` has no production deployment.")
        return snap.name(snap.production)

    async def list_versions(self) -> list[Version]:
        """Return the deployments rollbot may go back to, newest first, current and previous."""
        snap = await self._client.snapshot()
        way_back = offered(snap, self._settings.mode)
        previous = previous_stable(snap, way_back)
        return [
            Version(
                name=snap.name(d),
                created_at=d.created,
                current=snap.production is not None and d.uid == snap.production.uid,
                previous_stable=previous is not None and d.uid == previous.uid,
                detail=f"{d.link} ({d.uid})",
                aliases=tuple(
                    alias
                    for alias in (d.uid, d.url, d.meta_version)
                    if alias and alias != snap.name(d)
                ),
                # Named by its uid (no meta version, or one another deployment has too):
                # messages show the version or commit people know, the uid beside it.
                id_kind="deployment" if snap.name(d) == d.uid else "",
                label=label_of(d),
            )
            for d in way_back
        ]

    async def plan(self, target: str) -> Plan:
        """Describe the alias job (or the abort) that would move production, changing nothing."""
        snap = await self._client.snapshot()
        deployment = self._resolve(snap, target)
        settings = self._settings
        if snap.rolling is not None:
            return plan_abort(snap, snap.rolling, deployment, settings.promote_timeout_seconds)
        steps = [
            f"Point production of Vercel project `{snap.project_name}` at {deployment.link} "
            f"({snap.name(deployment)}, created {deployment.created:%Y-%m-%d %H:%M} UTC); "
            f"it serves {snap.serving()} now.",
            f"Call POST {self._mutation_path(snap, deployment)} "
            f"({'instant rollback' if settings.mode == 'rollback' else 'promote'}) once; "
            "it is never retried.",
            f"Wait up to {settings.promote_timeout_seconds:g} s for the project's alias job "
            f"(lastAliasRequest) to succeed, checking every {settings.poll_interval_seconds:g} s.",
        ]
        return Plan(steps=steps, warnings=self._warnings(snap, deployment))

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Start the alias job (or abort the rolling release) once, and wait for it."""
        started = time.monotonic()
        snap = await self._client.snapshot()
        deployment = self._resolve(snap, target)
        if snap.rolling is not None:
            return await abort_rolling(
                self._client,
                snap,
                snap.rolling,
                deployment,
                progress,
                self._settings.promote_timeout_seconds,
            )
        name = snap.name(deployment)
        if snap.production is not None and deployment.uid == snap.production.uid:
            raise Refused(
                f"Production already serves {snap.serving()}; nothing to do.",
                target_state=snap.describe(),
            )
        path = self._mutation_path(snap, deployment)
        await say(progress, f"Asking Vercel to serve {deployment.link} ({name}): POST {path}")
        await self._request_alias_job(snap, deployment, path)
        await say(progress, "Vercel accepted the request; waiting for its alias job.")
        job = await self._wait_for_job(snap, deployment, progress)
        seconds = time.monotonic() - started
        log.info(
            "vercel.rollback",
            project=snap.project_name,
            target=name,
            job=job.get("type"),
            seconds=round(seconds, 2),
        )
        notes = []
        if self._settings.mode == "rollback":
            notes.append(
                "This was a Vercel instant rollback: to return to normal deploys later, "
                "promote a deployment (`vercel promote`), as Vercel's docs advise."
            )
        return Outcome(
            summary=f"Vercel production of `{snap.project_name}` now serves {deployment.link} "
            f"({name}); the alias job succeeded in {seconds:.1f} s.",
            notes=notes,
        )

    async def describe_state(self) -> str:
        """Say what production serves now, and any job or rollout running, asked from Vercel."""
        return await self._client.describe_state()

    # -- Preflight and Describe -------------------------------------------------------------

    async def preflight(self, target: str) -> PreflightReport:
        """Check that `target` can serve production and say what changes, changing nothing."""
        return await preflight(self._client, self._settings, target)

    async def identity_now(self) -> Identity:
        """Return exactly what production serves now, asked from Vercel."""
        return await identity_now(self._client)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    # -- Freeze -----------------------------------------------------------------------------

    async def freeze(self, bad: str, good: str) -> FreezeRecord:
        """Pause auto-assignment of production domains, so a new build of `bad` stays off them."""
        return await self._freezer.freeze(bad)

    async def unfreeze(self, record: FreezeRecord) -> str:
        """Resume auto-assignment of production domains if the freeze paused it."""
        return await self._freezer.unfreeze(record)

    # -- the alias job ----------------------------------------------------------------------

    async def _request_alias_job(self, snap: Snapshot, deployment: Deployment, path: str) -> None:
        """Send the rollback or promote request once; never again, whatever happens."""
        what = f"requesting the {self._settings.mode} to {deployment.link}"
        params: Json = {}
        if self._settings.mode == "rollback":
            params["description"] = "Rolled back by rollbot"

        async def landed() -> bool:
            fresh = await self._client.snapshot_or_none()
            return fresh is not None and is_ours(fresh.job, snap.job, deployment)

        await self._client.mutate(path, what, params, {}, landed, f"{self._settings.mode} status")

    async def _wait_for_job(
        self, snap: Snapshot, deployment: Deployment, progress: Progress
    ) -> Json:
        """Poll the project's lastAliasRequest until our job succeeds, fails or runs out of time."""
        settings = self._settings
        seen: str | None = None

        async def check() -> Json | None:
            nonlocal seen
            try:
                project = await self._client.project(retry=False)
            except (Transient, TimedOut):
                raise
            except ProviderError as exc:
                raise type(exc)(
                    f"Vercel accepted the {settings.mode}, but its progress could not be read: "
                    f"{sentence(exc.message)} It may still finish.",
                    target_state=await self._client.state_or_unknown(),
                ) from exc
            job: Json = project.get("lastAliasRequest") or {}
            status = str(job.get("jobStatus")) if is_ours(job, snap.job, deployment) else None
            if status is not None and status != seen:
                seen = status
                await say(progress, f"Vercel alias job ({job.get('type')}): {status}")
            serving = production_of(project, settings.version_meta_key)
            on_target = serving is not None and serving.uid == deployment.uid
            # Vercel may drop a finished job from the project; the target then tells.
            if status == "succeeded" or (status in (None, "skipped") and on_target):
                return job or {"type": settings.mode, "jobStatus": "succeeded"}
            if status is not None and status not in RUNNING:
                raise RollbackFailed(
                    f"Vercel's alias job to {deployment.link} ({snap.name(deployment)}) "
                    f"ended `{status}`; `vercel {settings.mode} status {snap.project_name}` "
                    "shows the job.",
                    target_state=await self._client.state_or_unknown(),
                )
            return None

        def late() -> str:
            return (
                f"Vercel's alias job to {deployment.link} ({snap.name(deployment)}) did not "
                f"finish within {settings.promote_timeout_seconds:g} s "
                f"(last status: {seen or 'not started'}); it may still finish."
            )

        return await self._client.watch(check, late, progress)

    # -- helpers ----------------------------------------------------------------------------

    def _mutation_path(self, snap: Snapshot, deployment: Deployment) -> str:
        # Instant rollback by default: Vercel's docs make it the incident tool for a deployment
        # that served production, it answers 201 and takes a reason; the rollback guide's
        # `vercel promote` is `mode: promote`.
        return MUTATION_PATHS[self._settings.mode].format(
            project=snap.project_id, deployment=deployment.uid
        )

    def _resolve(self, snap: Snapshot, target: str) -> Deployment:
        """Find the deployment a target names, refusing one that is no way back."""
        return resolve(snap, target, self._settings.mode, self._settings.version_meta_key)

    def _warnings(self, snap: Snapshot, deployment: Deployment) -> list[str]:
        warnings = []
        job = snap.job or {}
        if job.get("jobStatus") in RUNNING:
            warnings.append(
                f"Vercel is still running a {job.get('type')} of this project "
                f"({job.get('jobStatus')}); it may refuse a second one."
            )
        if snap.production is not None and deployment.created_ms > snap.production.created_ms:
            warnings.append(
                f"{snap.name(deployment)} is newer than what production serves: this rolls "
                "forward, not back."
            )
        return warnings
