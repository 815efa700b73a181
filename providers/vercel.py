"""Vercel provider: point production back at an earlier READY production deployment.

What this module relies on, from Vercel's REST API reference and its CLI's source:

- ``GET /v6/deployments?projectId=&target=production&state=READY&limit=`` lists deployments
  newest first with ``uid``, ``url`` (a host, no scheme), ``created``/``createdAt`` (ms),
  ``state``/``readyState``, ``target``, ``meta`` and ``isRollbackCandidate``.
- ``GET /v9/projects/{idOrName}``: ``targets.production`` is the deployment the production
  domains serve now; ``lastAliasRequest`` (``jobStatus`` pending | in-progress | succeeded
  | failed | skipped, ``fromDeploymentId``, ``toDeploymentId``, ``type`` rollback |
  promote, ``requestedAt``) is only included with ``rollbackInfo=true``, which is how
  ``vercel rollback status`` asks for it.
- ``POST /v1/projects/{projectId}/rollback/{deploymentId}`` (201; the CLI still calls the
  same operation under /v9) and ``POST /v10/projects/{projectId}/promote/{deploymentId}``
  (201 or 202) only start an alias job: success is read from ``lastAliasRequest``.
- Errors are ``{"error": {"code", "message"}}``; a bad token gets 403 ``forbidden``; 429
  ``rate_limited`` comes with ``X-RateLimit-Limit/Remaining/Reset`` (epoch seconds).
- ``Authorization: Bearer <token>`` and, for a team's project, ``teamId`` on every call.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

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
)
from providers.http import error_for, send
from providers.retry import retrying

log = structlog.get_logger(__name__)

Json = dict[str, Any]

DEPLOYMENTS_PATH = "/v6/deployments"
PROJECT_PATH = "/v9/projects/{project}"
MUTATION_PATHS = {
    "rollback": "/v1/projects/{project}/rollback/{deployment}",
    "promote": "/v10/projects/{project}/promote/{deployment}",
}
# The documented answers of both endpoints; 200 is accepted too in case one answers so.
ACCEPTED = frozenset({200, 201, 202})
RUNNING = frozenset({"pending", "in-progress"})
# The grammar rollbot checks chat versions against (bot/names.py): a meta version that
# does not fit it could never be typed back, so such a deployment is named by its uid.
NAMEABLE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
SEMVER_LIKE = re.compile(r"[vV]?\d")
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


@dataclass(frozen=True)
class Deployment:
    """One READY production deployment, as much of it as a rollback needs."""

    uid: str
    url: str
    created_ms: int
    meta_version: str | None
    rollback_candidate: bool | None = None

    @classmethod
    def parse(cls, raw: Json, meta_key: str) -> Deployment:
        """Read a deployment list item or a project's `targets.production`."""
        meta = raw.get("meta") or {}
        version = meta.get(meta_key)
        return cls(
            # The list calls the id `uid`, a project's targets call it `id`.
            uid=str(raw.get("uid") or raw.get("id")),
            url=str(raw.get("url") or ""),
            created_ms=int(raw.get("createdAt") or raw.get("created") or 0),
            meta_version=str(version).strip() if version not in (None, "") else None,
            rollback_candidate=raw.get("isRollbackCandidate"),
        )

    @property
    def link(self) -> str:
        """The deployment's own URL."""
        return f"https://{self.url}" if self.url else self.uid

    @property
    def created(self) -> datetime:
        """When the deployment was created."""
        return datetime.fromtimestamp(self.created_ms / 1000, UTC)


@dataclass(frozen=True)
class Snapshot:
    """The project and its READY production deployments, read together."""

    project_id: str
    project_name: str
    production: Deployment | None
    job: Json | None
    deployments: list[Deployment]
    names: dict[str, str]

    def name(self, deployment: Deployment) -> str:
        """Return the version name rollbot shows for a deployment."""
        return self.names[deployment.uid]

    def serving(self) -> str:
        """Say what production serves, e.g. `https://app-x.vercel.app (v1.2.4)`."""
        if self.production is None:
            return "nothing (the project has no production deployment)"
        return f"{self.production.link} ({self.name(self.production)})"


class VercelProvider:
    """Roll a Vercel project's production back to an earlier deployment."""

    def __init__(self, settings: VercelSettings) -> None:
        self._settings = settings
        self._http: httpx.AsyncClient | None = None
        self._token: str | None = None

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the version production serves now."""
        snap = await self._snapshot()
        if snap.production is None:
            raise NotFound(f"Vercel project `{snap.project_name}` has no production deployment.")
        return snap.name(snap.production)

    async def list_versions(self) -> list[Version]:
        """Return READY production deployments, newest first, current and previous marked."""
        snap = await self._snapshot()
        previous = _previous_stable(snap)
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
            for d in snap.deployments
        ]

    async def plan(self, target: str) -> Plan:
        """Describe the alias job that would move production to `target`, changing nothing."""
        snap = await self._snapshot()
        deployment = self._resolve(snap, target)
        settings = self._settings
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
        """Start the alias job for `target` (one request, never repeated) and wait for it."""
        started = time.monotonic()
        snap = await self._snapshot()
        deployment = self._resolve(snap, target)
        name = snap.name(deployment)
        if snap.production is not None and deployment.uid == snap.production.uid:
            raise Refused(
                f"Production already serves {snap.serving()}; nothing to do.",
                target_state=self._state_line(snap),
            )
        path = self._mutation_path(snap, deployment)
        await progress(f"Asking Vercel to serve {deployment.link} ({name}): POST {path}")
        await self._request_alias_job(snap, deployment, path)
        await progress("Vercel accepted the request; waiting for its alias job.")
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
        """Say what production serves now, and any alias job still running, asked from Vercel."""
        return self._state_line(await self._snapshot())

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    # -- reading ----------------------------------------------------------------------------

    async def _snapshot(self) -> Snapshot:
        """Read the project and its READY production deployments, and name them."""
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
        production = _production(project, key)
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
            names=_names(deployments),
        )

    async def _project(self) -> Json:
        """Read the project with its last alias request."""
        project = self._settings.project
        return await self._read(
            PROJECT_PATH.format(project=project),
            f"reading project `{project}`",
            {"rollbackInfo": "true"},
        )

    async def _read(self, path: str, what: str, params: Json) -> Json:
        """GET a JSON document, retrying rate limits and transient failures."""

        async def once() -> Json:
            response = await self._send("GET", path, what, params)
            if response.status_code != 200:
                raise self._error(response, what)
            return _json(response, what)

        return await retrying(once)

    # -- the alias job ----------------------------------------------------------------------

    async def _request_alias_job(self, snap: Snapshot, deployment: Deployment, path: str) -> None:
        """Send the rollback or promote request once; never again, whatever happens."""
        what = f"requesting the {self._settings.mode} to {deployment.link}"
        params: Json = {}
        if self._settings.mode == "rollback":
            params["description"] = "Rolled back by rollbot"
        error: ProviderError
        try:
            response = await self._send("POST", path, what, params, json={})
        except (TimedOut, Transient) as exc:
            error = exc
        else:
            if response.status_code in ACCEPTED:
                return
            error = self._error(response, what)
        if isinstance(error, TimedOut | Transient) and not isinstance(error, RateLimited):
            # An unanswered or failed request may still have reached Vercel: look, never resend.
            fresh = await self._snapshot_or_none()
            if fresh is not None and _ours(fresh.job, snap.job, deployment):
                log.warning("vercel.request_failed_but_job_started", error=error.message)
                return
            raise type(error)(
                f"{error.message}. It may still have reached Vercel and was not sent again: "
                f"check `vercel {self._settings.mode} status {snap.project_name}` before retrying.",
                target_state=await self._state_or_unknown(),
            ) from error
        error.target_state = await self._state_or_unknown()
        raise error

    async def _wait_for_job(
        self, snap: Snapshot, deployment: Deployment, progress: Progress
    ) -> Json:
        """Poll the project's lastAliasRequest until our job succeeds, fails or runs out of time."""
        settings = self._settings
        give_up_at = time.monotonic() + settings.promote_timeout_seconds
        seen: str | None = None
        while True:
            try:
                project = await self._project()
            except ProviderError as exc:
                raise RollbackFailed(
                    f"Vercel accepted the request, but its progress could not be read: "
                    f"{exc.message}",
                    target_state=await self._state_or_unknown(),
                ) from exc
            job: Json = project.get("lastAliasRequest") or {}
            status = str(job.get("jobStatus")) if _ours(job, snap.job, deployment) else None
            if status is not None and status != seen:
                seen = status
                await progress(f"Vercel alias job ({job.get('type')}): {status}")
            serving = _production(project, settings.version_meta_key)
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
            if time.monotonic() + settings.poll_interval_seconds > give_up_at:
                raise TimedOut(
                    f"Vercel's alias job to {deployment.link} ({snap.name(deployment)}) did not "
                    f"finish within {settings.promote_timeout_seconds:g} s "
                    f"(last status: {seen or 'not started'}); it may still finish.",
                    target_state=await self._state_or_unknown(),
                )
            await asyncio.sleep(settings.poll_interval_seconds)

    # -- HTTP -------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        """Return the one HTTP client, created on first use (it needs a running loop)."""
        if self._http is None:
            variable = self._settings.token_env
            token = os.environ.get(variable, "").strip()
            if not token:
                raise AuthRejected(f"Vercel: environment variable {variable} holds no token.")
            self._token = token
            seconds = self._settings.request_timeout_seconds
            self._http = httpx.AsyncClient(
                base_url=self._settings.api_url.rstrip("/"),
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=httpx.Timeout(seconds, connect=min(seconds, 5.0)),
            )
        return self._http

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
        code, message = _error_body(response)
        detail = f"{message} ({code})" if message and code else message or code
        error = error_for(response, f"Vercel: {what}", self._scrub(detail))
        if isinstance(error, AuthRejected):
            team = self._settings.team_id
            scope = f"team {team}" if team else "the project"
            error = AuthRejected(
                f"{error.message}. Check the token in {self._settings.token_env} "
                f"and its access to {scope}."
            )
        if isinstance(error, RateLimited) and error.retry_after is None:
            error.retry_after = _reset_wait(response)
        return error

    def _scrub(self, text: str) -> str:
        """Remove the token from text that came from elsewhere (Vercel may echo a request)."""
        return text.replace(self._token, "***") if self._token else text

    # -- helpers ----------------------------------------------------------------------------

    def _mutation_path(self, snap: Snapshot, deployment: Deployment) -> str:
        # Instant rollback by default: Vercel's docs make it the incident tool for a deployment
        # that served production (every one we list), it answers 201 and takes a reason; the
        # rollback guide's `vercel promote` is `mode: promote`.
        return MUTATION_PATHS[self._settings.mode].format(
            project=snap.project_id, deployment=deployment.uid
        )

    def _resolve(self, snap: Snapshot, target: str) -> Deployment:
        """Find the deployment meant by a version name, meta version, uid or url."""
        wanted = _version_key(target)
        for deployment in snap.deployments:  # newest first: a redeploy wins over its original
            if target in (deployment.uid, deployment.url, snap.name(deployment)):
                return deployment
            if deployment.meta_version and _version_key(deployment.meta_version) == wanted:
                return deployment
        shown = ", ".join(snap.name(d) for d in snap.deployments[:LISTED_NAMES]) or "none"
        raise NotFound(
            f"No READY production deployment of Vercel project `{snap.project_name}` is "
            f"`{target}` (by meta.{self._settings.version_meta_key}, id or url). "
            f"Available: {shown}."
        )

    def _warnings(self, snap: Snapshot, deployment: Deployment) -> list[str]:
        warnings = []
        job = snap.job or {}
        if job.get("jobStatus") in RUNNING:
            warnings.append(
                f"Vercel is still running a {job.get('type')} of this project "
                f"({job.get('jobStatus')}); it may refuse a second one."
            )
        if self._settings.mode == "rollback" and deployment.rollback_candidate is False:
            warnings.append(
                f"Vercel does not list {deployment.link} as an instant rollback candidate "
                "(on the Hobby plan only the previous production deployment is); it may refuse."
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
            to = next((d for d in snap.deployments if d.uid == job.get("toDeploymentId")), None)
            towards = f"{to.link} ({snap.name(to)})" if to else str(job.get("toDeploymentId"))
            line += f"; a {job.get('type')} to {towards} is {job.get('jobStatus')}"
        return line

    async def _snapshot_or_none(self) -> Snapshot | None:
        try:
            return await self._snapshot()
        except ProviderError:
            return None

    async def _state_or_unknown(self) -> str:
        """Describe the state for an error message without raising a second error."""
        try:
            return await self.describe_state()
        except ProviderError as exc:
            return f"unknown (Vercel could not be asked: {exc.message})"


def _production(project: Json, meta_key: str) -> Deployment | None:
    """Return the deployment production serves: the project's `targets.production`."""
    target = (project.get("targets") or {}).get("production")
    return Deployment.parse(target, meta_key) if target and target.get("id") else None


def _previous_stable(snap: Snapshot) -> Deployment | None:
    """Return the newest deployment older than the one production serves."""
    if snap.production is None:
        return None
    current = snap.production
    return next(
        (d for d in snap.deployments if d.uid != current.uid and d.created_ms < current.created_ms),
        None,
    )


def _names(deployments: list[Deployment]) -> dict[str, str]:
    """Name deployments by meta version (`1.2.3` shows as `v1.2.3`), else by uid; unique."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for deployment in deployments:
        name = _display(deployment.meta_version)
        if name is None or name in taken:
            name = deployment.uid
        taken.add(name)
        names[deployment.uid] = name
    return names


def _display(meta_version: str | None) -> str | None:
    if not meta_version:
        return None
    name = f"v{meta_version}" if meta_version[0].isdigit() else meta_version
    return name if NAMEABLE.fullmatch(name) else None


def _version_key(text: str) -> str:
    """Compare versions without a leading v: `v1.2.3` and `1.2.3` are the same release."""
    return text[1:] if SEMVER_LIKE.match(text) and text[0] in "vV" else text


def _ours(job: Json | None, before: Json | None, deployment: Deployment) -> bool:
    """Return True when `job` is a new alias job towards `deployment` (not the one before)."""
    if not job or job.get("toDeploymentId") != deployment.uid:
        return False
    return not before or job.get("requestedAt") != before.get("requestedAt")


def _json(response: httpx.Response, what: str) -> Json:
    try:
        body = response.json()
    except ValueError as exc:
        raise Transient(f"Vercel: {what}: the answer was not JSON") from exc
    if not isinstance(body, dict):
        raise Transient(f"Vercel: {what}: unexpected answer ({type(body).__name__})")
    return body


def _error_body(response: httpx.Response) -> tuple[str, str]:
    """Return Vercel's error code and message, or empty strings."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")[:300]


def _reset_wait(response: httpx.Response) -> float | None:
    """Seconds until X-RateLimit-Reset (epoch seconds), for a 429 without Retry-After."""
    try:
        reset = float(response.headers["X-RateLimit-Reset"])
    except (KeyError, ValueError):
        return None
    return max(0.0, reset - time.time())
