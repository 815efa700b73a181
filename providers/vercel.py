"""Vercel provider: point production back at an earlier production deployment.

The API it relies on is described in `providers/vercel_api.py`. Choices made here:

- Only deployments that served production are offered: READY, target production, not
  a staged build (readySubstate STAGED) nor a rolling release's canary (ROLLING); for an
  instant rollback also only those Vercel marks ``isRollbackCandidate``. Naming another
  one is refused with its reason.
- An active rolling release is undone the documented way: rolling back to its current
  (base) deployment aborts the release, which sends all traffic back there. Any other
  target is refused while the release runs: an alias job would race the rollout.
- The mutation (rollback, promote or abort) is sent once. When its answer is lost (a
  timeout, a closed connection, a 5xx or a proxy's page) Vercel is asked what it did.
- Waiting for the alias job, a rate limit or a failed read only slows the watch down
  (Retry-After honoured, jittered backoff); the deadline alone ends it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    AuthRejected,
    NotFound,
    Outcome,
    Plan,
    Progress,
    ProviderError,
    RateLimited,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
    Version,
    redact,
    say,
    sentence,
    state_or_unknown,
)
from providers.http import LazyClient, error_for, send
from providers.retry import retrying, watching
from providers.vercel_api import (
    ABORT_PATH,
    ACCEPTED,
    DEPLOYMENTS_PATH,
    MUTATION_PATHS,
    NEVER_SERVED,
    PROJECT_PATH,
    ROLLING_PATH,
    RUNNING,
    Deployment,
    Json,
    RollingRelease,
    Snapshot,
    error_body,
    is_ours,
    json_of,
    names_of,
    previous_stable,
    production_of,
    version_key,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
LISTED_NAMES = 10


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
        self._http = LazyClient(settings.request_timeout_seconds)
        self._token: str | None = None

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the version production serves now."""
        snap = await self._snapshot()
        if snap.production is None:
            raise NotFound(f"Vercel project `{snap.project_name}` has no production deployment.")
        return snap.name(snap.production)

    async def list_versions(self) -> list[Version]:
        """Return the deployments rollbot may go back to, newest first, current and previous."""
        snap = await self._snapshot()
        offered = [d for d in snap.deployments if self._refusal(snap, d) is None]
        previous = previous_stable(snap, offered)
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
            )
            for d in offered
        ]

    async def plan(self, target: str) -> Plan:
        """Describe the alias job (or the abort) that would move production, changing nothing."""
        snap = await self._snapshot()
        deployment = self._resolve(snap, target)
        settings = self._settings
        if snap.rolling is not None:
            self._check_rolling(snap, snap.rolling, deployment)
            steps = [
                f"Abort the active rolling release of {snap.rolling.canary_link} "
                f"({snap.rolling.share()}) so {snap.named(deployment.uid)} serves all traffic "
                f"again: POST {ABORT_PATH.format(project=snap.project_id)} once; it is never "
                "retried.",
                f"Wait up to {settings.promote_timeout_seconds:g} s for Vercel to show the "
                "rolling release ABORTED.",
            ]
            return Plan(steps=steps)
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
        snap = await self._snapshot()
        deployment = self._resolve(snap, target)
        if snap.rolling is not None:
            return await self._abort_rolling(snap, snap.rolling, deployment, progress)
        name = snap.name(deployment)
        if snap.production is not None and deployment.uid == snap.production.uid:
            raise Refused(
                f"Production already serves {snap.serving()}; nothing to do.",
                target_state=self._state_line(snap),
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
        return self._state_line(await self._snapshot())

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    # -- reading ----------------------------------------------------------------------------

    async def _snapshot(self) -> Snapshot:
        """Read the project, its READY production deployments and its rolling release."""
        project = await self._project()
        listed = await self._read(
            DEPLOYMENTS_PATH,
            f"listing the production deployments of project `{self._settings.project}`",
            {
                "projectId": project["id"],
                "target": "production",
                "state": "READY",
                "limit": self._settings.history,
            },
        )
        key = self._settings.version_meta_key
        deployments = [
            Deployment.parse(raw, key)
            for raw in listed.get("deployments") or []
            # The filters are the API's; checked again so a loose answer cannot mislead us.
            if raw.get("target") == "production"
            and (raw.get("readyState") or raw.get("state")) == "READY"
        ]
        production = production_of(project, key)
        # Production may serve a deployment older than the page listed: it still counts.
        if production is not None and all(d.uid != production.uid for d in deployments):
            deployments.append(production)
        deployments.sort(key=lambda d: d.created_ms, reverse=True)
        return Snapshot(
            project_id=str(project["id"]),
            project_name=str(project.get("name") or self._settings.project),
            production=production,
            job=project.get("lastAliasRequest"),
            deployments=deployments,
            names=names_of(deployments),
            rolling=await self._rolling(str(project["id"])),
        )

    async def _project(self, *, retry: bool = True) -> Json:
        """Read the project with its last alias request."""
        project = self._settings.project
        return await self._read(
            PROJECT_PATH.format(project=project),
            f"reading project `{project}`",
            {"rollbackInfo": "true"},
            retry=retry,
        )

    async def _rolling(self, project_id: str, *, retry: bool = True) -> RollingRelease | None:
        """Read the project's ACTIVE rolling release, if any."""
        try:
            body = await self._read(
                ROLLING_PATH.format(project=project_id),
                "reading the project's rolling release",
                {},
                retry=retry,
            )
        except NotFound:
            # Chosen: a team without Rolling Releases (a Hobby plan) has no release to read.
            return None
        return RollingRelease.parse(body)

    async def _read(self, path: str, what: str, params: Json, *, retry: bool = True) -> Json:
        """GET a JSON document, retrying rate limits, timeouts and transient failures."""

        async def once() -> Json:
            response = await self._send("GET", path, what, params)
            if response.status_code != 200:
                raise self._error(response, what)
            return json_of(response, what)

        return await retrying(once, timeouts=True) if retry else await once()

    # -- the alias job ----------------------------------------------------------------------

    async def _request_alias_job(self, snap: Snapshot, deployment: Deployment, path: str) -> None:
        """Send the rollback or promote request once; never again, whatever happens."""
        what = f"requesting the {self._settings.mode} to {deployment.link}"
        params: Json = {}
        if self._settings.mode == "rollback":
            params["description"] = "Rolled back by rollbot"

        async def landed() -> bool:
            fresh = await self._snapshot_or_none()
            return fresh is not None and is_ours(fresh.job, snap.job, deployment)

        await self._mutate(path, what, params, {}, landed, f"{self._settings.mode} status")

    async def _mutate(
        self,
        path: str,
        what: str,
        params: Json,
        body: Json,
        landed: Callable[[], Awaitable[bool]],
        status_command: str,
    ) -> None:
        """POST a mutation once; when its answer is lost, ask Vercel whether it landed."""
        error: ProviderError
        try:
            response = await self._send("POST", path, what, params, json=body)
        except (TimedOut, Transient) as exc:
            error = exc
        else:
            if response.status_code in ACCEPTED:
                return
            error = self._error(response, what)
        if isinstance(error, TimedOut | Transient) and not isinstance(error, RateLimited):
            # An unanswered or failed request may still have reached Vercel: look, never resend.
            if await landed():
                log.warning("vercel.request_failed_but_applied", error=error.message)
                return
            raise type(error)(
                f"{error.message}. It may still have reached Vercel and was not sent again: "
                f"check `vercel {status_command} {self._settings.project}` before retrying.",
                target_state=await self._state_or_unknown(),
            ) from error
        error.target_state = await self._state_or_unknown()
        raise error

    async def _wait_for_job(
        self, snap: Snapshot, deployment: Deployment, progress: Progress
    ) -> Json:
        """Poll the project's lastAliasRequest until our job succeeds, fails or runs out of time."""
        settings = self._settings
        seen: str | None = None

        async def check() -> Json | None:
            nonlocal seen
            try:
                project = await self._project(retry=False)
            except (Transient, TimedOut):
                raise
            except ProviderError as exc:
                raise type(exc)(
                    f"Vercel accepted the {settings.mode}, but its progress could not be read: "
                    f"{sentence(exc.message)} It may still finish.",
                    target_state=await self._state_or_unknown(),
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
                    target_state=await self._state_or_unknown(),
                )
            return None

        def late() -> str:
            return (
                f"Vercel's alias job to {deployment.link} ({snap.name(deployment)}) did not "
                f"finish within {settings.promote_timeout_seconds:g} s "
                f"(last status: {seen or 'not started'}); it may still finish."
            )

        return await self._watch(check, late, progress)

    # -- rolling releases -------------------------------------------------------------------

    def _check_rolling(self, snap: Snapshot, rolling: RollingRelease, target: Deployment) -> None:
        """Refuse any target but the release's current deployment while the release runs."""
        if target.uid == rolling.current_id:
            return
        base = snap.named(rolling.current_id)
        raise Refused(
            f"A rolling release of {rolling.canary_link} is active on Vercel project "
            f"`{snap.project_name}` ({rolling.share()}; the rest goes to {base}). Roll back "
            f"to {base} instead, which aborts the release, or abort or complete it in Vercel "
            "first (`vercel rolling-release abort`).",
            target_state=self._state_line(snap),
        )

    async def _abort_rolling(
        self, snap: Snapshot, rolling: RollingRelease, deployment: Deployment, progress: Progress
    ) -> Outcome:
        """Abort the active rolling release so its current deployment serves all traffic."""
        self._check_rolling(snap, rolling, deployment)
        started = time.monotonic()
        path = ABORT_PATH.format(project=snap.project_id)
        await say(
            progress,
            f"A rolling release of {rolling.canary_link} has {rolling.share()}; aborting it "
            f"so {snap.named(deployment.uid)} serves all traffic: POST {path}",
        )

        async def ended() -> bool:
            try:
                return await self._rolling(snap.project_id) != rolling
            except ProviderError:
                return False

        body = {"canaryDeploymentId": rolling.canary_id}
        await self._mutate(path, "aborting the rolling release", {}, body, ended, "rolling-release")

        async def check() -> bool | None:
            return True if await self._rolling(snap.project_id, retry=False) is None else None

        def late() -> str:
            return (
                f"Vercel accepted the abort, but the rolling release of {rolling.canary_link} "
                f"still shows ACTIVE after {self._settings.promote_timeout_seconds:g} s."
            )

        await self._watch(check, late, progress)
        seconds = time.monotonic() - started
        log.info("vercel.rolling_release_aborted", project=snap.project_name, seconds=seconds)
        return Outcome(
            summary=f"Vercel aborted the rolling release of {rolling.canary_link}: "
            f"{snap.named(deployment.uid)} serves all traffic of `{snap.project_name}` again "
            f"({seconds:.1f} s)."
        )

    async def _watch(
        self, check: Callable[[], Awaitable[T | None]], late: Callable[[], str], progress: Progress
    ) -> T:
        """Poll `check` until it answers or the rollback's deadline passes."""

        async def trouble(error: ProviderError) -> None:
            await say(progress, f"{error.message}; still waiting.")

        async def timed_out() -> ProviderError:
            return TimedOut(late(), target_state=await self._state_or_unknown())

        return await watching(
            check,
            deadline_seconds=self._settings.promote_timeout_seconds,
            interval=self._settings.poll_interval_seconds,
            trouble=trouble,
            late=timed_out,
        )

    # -- HTTP -------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        """Return the one HTTP client, made with the token read on first use."""
        if self._token is None:
            variable = self._settings.token_env
            token = os.environ.get(variable, "").strip()
            if not token:
                raise AuthRejected(f"Vercel: environment variable {variable} holds no token.")
            self._token = token
        return self._http.get(
            base_url=self._settings.api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
        )

    async def _send(
        self, method: str, path: str, what: str, params: Json, json: Json | None = None
    ) -> httpx.Response:
        """Send one request with the team scope; transport failures become provider errors."""
        query = {**params, **({"teamId": self._settings.team_id} if self._settings.team_id else {})}
        return await send(
            self._client(), method, path, what=f"Vercel: {what}", params=query, json=json
        )

    def _error(self, response: httpx.Response, what: str) -> ProviderError:
        """Translate an error answer, with Vercel's own message, never the token."""
        code, message = error_body(response)
        detail = f"{message} ({code})" if message and code else message or code
        error = error_for(response, f"Vercel: {what}", self._scrub(detail), service="Vercel")
        if isinstance(error, AuthRejected):
            team = self._settings.team_id
            scope = f"team {team}" if team else "the project"
            error = AuthRejected(
                f"{error.message}. Check the token in {self._settings.token_env} "
                f"and its access to {scope}."
            )
        return error

    def _scrub(self, text: str) -> str:
        """Remove the token from text that came from elsewhere (Vercel may echo a request)."""
        return redact(text, self._token)

    # -- helpers ----------------------------------------------------------------------------

    def _mutation_path(self, snap: Snapshot, deployment: Deployment) -> str:
        # Instant rollback by default: Vercel's docs make it the incident tool for a deployment
        # that served production, it answers 201 and takes a reason; the rollback guide's
        # `vercel promote` is `mode: promote`.
        return MUTATION_PATHS[self._settings.mode].format(
            project=snap.project_id, deployment=deployment.uid
        )

    def _refusal(self, snap: Snapshot, deployment: Deployment) -> str | None:
        """Say why a listed deployment is no way back, or None when it is one."""
        if snap.production is not None and deployment.uid == snap.production.uid:
            return None
        if deployment.substate in NEVER_SERVED:
            return f"it is {NEVER_SERVED[deployment.substate]}"
        if self._settings.mode == "rollback" and deployment.rollback_candidate is False:
            return (
                "it is not an instant rollback candidate (isRollbackCandidate false: on the "
                "Hobby plan only the previous production deployment is); a `mode: promote` "
                "target can still promote it"
            )
        return None

    def _resolve(self, snap: Snapshot, target: str) -> Deployment:
        """Find the deployment meant by a version name, meta version, uid or url."""
        wanted = version_key(target)
        found = next(
            (
                d  # newest first: a redeploy wins over its original
                for d in snap.deployments
                if target in (d.uid, d.url, snap.name(d))
                or (d.meta_version and version_key(d.meta_version) == wanted)
            ),
            None,
        )
        if found is None:
            offered = [snap.name(d) for d in snap.deployments if self._refusal(snap, d) is None]
            raise NotFound(
                f"No READY production deployment of Vercel project `{snap.project_name}` is "
                f"`{target}` (by meta.{self._settings.version_meta_key}, id or url). "
                f"Available: {', '.join(offered[:LISTED_NAMES]) or 'none'}."
            )
        refusal = self._refusal(snap, found)
        if refusal is not None:
            raise Refused(
                f"{found.link} ({snap.name(found)}) is no way back for Vercel project "
                f"`{snap.project_name}`: {refusal}."
            )
        return found

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

    def _state_line(self, snap: Snapshot) -> str:
        line = f"Vercel project `{snap.project_name}`: production serves {snap.serving()}"
        job = snap.job or {}
        if job.get("jobStatus") in RUNNING:
            towards = snap.named(job.get("toDeploymentId"))
            line += f"; a {job.get('type')} to {towards} is {job.get('jobStatus')}"
        if snap.rolling is not None:
            line += (
                f"; a rolling release of {snap.rolling.canary_link} serves {snap.rolling.share()}"
            )
        return line

    async def _snapshot_or_none(self) -> Snapshot | None:
        try:
            return await self._snapshot()
        except ProviderError:
            return None

    async def _state_or_unknown(self) -> str:
        """Describe the state for an error message without raising a second error."""
        return await state_or_unknown(self.describe_state)
