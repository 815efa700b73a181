"""A local fake of the Vercel REST API: exactly the endpoints the vercel provider calls.

Shapes follow Vercel's REST API reference and the Vercel CLI's source:

- ``GET /v6/deployments`` (projectId, target, state, limit, until, ``meta-KEY`` filters as
  ``vercel ls --meta KEY=VALUE`` sends them) -> ``{"deployments": [...], "pagination"}``.
- ``GET /v9/projects/{idOrName}`` -> the project with ``targets.production``; its
  ``lastAliasRequest`` only with ``rollbackInfo=true``.
- ``POST /v1/projects/{projectId}/rollback/{deploymentId}`` -> 201, and
  ``POST /v10/projects/{projectId}/promote/{deploymentId}`` -> 202, both with no body;
  the alias job they start goes pending -> in-progress -> succeeded (or failed, or
  never finishes) over ``job_seconds``, and only a succeeded job moves production.
- Deployments that are not rollback candidates: previews (``target: null``), CANCELED
  and ERROR ones, and staged production builds (``readySubstate: STAGED``, made with
  ``vercel deploy --prod --skip-domain``: READY, production, never served); the canary
  of a rolling release reads ``readySubstate: ROLLING``.
- Rolling Releases: ``GET /v1/projects/{idOrName}/rolling-release`` answers
  ``{"rollingRelease": null | {state ACTIVE|COMPLETE|ABORTED, currentDeployment,
  canaryDeployment, activeStage: {targetPercentage}}}``; ``POST .../rolling-release/abort``
  sends all traffic back to the current deployment ("abort" rolls back, as the
  config endpoint's ``disableRolloutAction`` documents it), ``.../complete`` to the canary.
- Errors ``{"error": {"code", "message"}}``: 403 ``forbidden`` for a missing or bad token
  (with ``missingToken``/``invalidToken``), 404 ``not_found``, 429 ``rate_limited`` with
  its ``limit`` object, ``X-RateLimit-*`` headers and Retry-After, 500 ``internal_server_error``.
- Bad days, injected by tests: 429 with Retry-After while an alias job runs (the CLI's
  ``rollback status`` polling hits it), a 403 whose body is a ``rate_limited`` error, and
  an HTML 502 page from the CDN in front of the API (Cloudflare's "Bad gateway").

Where Vercel's docs are silent the fake makes a choice, marked "chosen" below.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Json = dict[str, Any]
Route = Literal[
    "deployments", "project", "rollback", "promote", "rolling", "rolling-abort", "rolling-complete"
]
JobOutcome = Literal["succeeded", "failed", "never"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TEAM_ID = "team_rollbot0test"
PROJECT_NAME = "frontend"
VERSIONS = ("1.2.2", "1.2.3", "1.2.4")  # production serves the last one
# Chosen: the list's default page size and cap (the reference documents neither).
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_counter = itertools.count(1)


@dataclass
class FakeDeployment:
    """A deployment the fake holds."""

    uid: str
    url: str
    created: int  # ms since the epoch
    meta: dict[str, str]
    project_id: str
    state: str = "READY"
    target: str | None = "production"
    rollback_candidate: bool = True
    substate: str = "PROMOTED"  # readySubstate of a READY deployment: STAGED, ROLLING, PROMOTED

    @property
    def version(self) -> str | None:
        """The release version in meta, as the guide tags deployments."""
        return self.meta.get("version")

    def listed(self, project_name: str) -> Json:
        """The deployment as GET /v6/deployments returns it."""
        return {
            "uid": self.uid,
            "name": project_name,
            "projectId": self.project_id,
            "url": self.url,
            "created": self.created,
            "createdAt": self.created,
            "buildingAt": self.created,
            "ready": self.created + 30_000,
            "source": "git",
            "state": self.state,
            "readyState": self.state,
            "readySubstate": self.substate if self.state == "READY" else None,
            "type": "LAMBDAS",
            "creator": {"uid": "usr_rollbot", "username": "release-bot"},
            "meta": dict(self.meta),
            "target": self.target,
            "aliasError": None,
            "inspectorUrl": f"https://vercel.com/rollbot/{project_name}/{self.uid}",
            "isRollbackCandidate": self.rollback_candidate,
        }

    def as_target(self, project_name: str) -> Json:
        """The deployment as a project's `targets.production` shows it."""
        return {
            "id": self.uid,
            "url": self.url,
            "alias": [f"{project_name}.example.com"],
            "createdAt": self.created,
            "readyState": self.state,
            "readySubstate": self.substate,
            "target": self.target,
            "meta": dict(self.meta),
            "name": project_name,
            "type": "LAMBDAS",
        }


@dataclass
class AliasJob:
    """A rollback or promote in flight: it progresses with time, read lazily."""

    from_id: str | None
    to_id: str
    kind: str
    requested_ms: int
    started: float  # time.monotonic()
    seconds: float
    outcome: JobOutcome
    status: str = "pending"

    def as_json(self) -> Json:
        """The job as `lastAliasRequest` shows it."""
        return {
            "fromDeploymentId": self.from_id,
            "toDeploymentId": self.to_id,
            "jobStatus": self.status,
            "requestedAt": self.requested_ms,
            "type": self.kind,
        }


@dataclass
class RollingRelease:
    """A rolling release: the canary serves `percent` of traffic, the current one the rest."""

    current_id: str
    canary_id: str
    percent: int
    state: str = "ACTIVE"

    def as_json(self, project: FakeProject) -> Json:
        """The release as GET /v1/projects/{idOrName}/rolling-release returns it."""

        def summary(uid: str) -> Json | None:
            found = project.deployment(uid)
            if found is None:
                return None
            return {"id": uid, "url": found.url, "name": project.name, "target": "production"}

        return {
            "state": self.state,
            "currentDeployment": summary(self.current_id),
            "canaryDeployment": summary(self.canary_id),
            "activeStage": {"index": 0, "targetPercentage": self.percent, "isFinalStage": False},
            "advancementType": "manual-approval",
        }


@dataclass
class FakeProject:
    """A project with its deployments and what its production domains serve."""

    id: str
    name: str
    deployments: list[FakeDeployment] = field(default_factory=list)
    production: str | None = None  # uid of the deployment production serves
    job: AliasJob | None = None
    rolling: RollingRelease | None = None

    def deployment(self, uid: str) -> FakeDeployment | None:
        """Return one of the project's deployments by uid."""
        return next((d for d in self.deployments if d.uid == uid), None)

    def by_version(self, version: str) -> FakeDeployment:
        """Return the newest deployment with this meta version."""
        found = [d for d in self.deployments if d.version == version]
        assert found, f"no deployment of {self.name} has meta version {version}"
        return max(found, key=lambda d: d.created)

    def serving(self) -> FakeDeployment | None:
        """Return the deployment production serves."""
        return self.deployment(self.production) if self.production else None

    def as_json(self, account_id: str, with_rollback_info: bool) -> Json:
        """The project as GET /v9/projects/{idOrName} returns it."""
        serving = self.serving()
        body: Json = {
            "id": self.id,
            "name": self.name,
            "accountId": account_id,
            "framework": "nextjs",
            "createdAt": min((d.created for d in self.deployments), default=0),
            "updatedAt": int(time.time() * 1000),
            "targets": {"production": serving.as_target(self.name)} if serving else {},
        }
        if with_rollback_info:
            body["lastAliasRequest"] = self.job.as_json() if self.job else None
        return body


@dataclass
class Failure:
    """An answer a test injected in place of the real one."""

    status: int
    body: Json | str
    headers: dict[str, str]
    during_job: bool = False  # only while an alias job runs (status polling)


@dataclass
class Call:
    """One request the fake received."""

    route: str
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None


class FakeVercel:
    """The fake API server with its projects and the knobs tests turn."""

    def __init__(self, token: str | None = None, team_id: str | None = TEAM_ID) -> None:
        self.token = token or f"vercel-test-{secrets.token_hex(12)}"
        self.team_id = team_id
        self.account_id = team_id or "usr_rollbot"
        self.projects: dict[str, FakeProject] = {}
        self.calls: list[Call] = []
        # Knobs.
        self.job_seconds = 0.6
        self.job_outcome: JobOutcome = "succeeded"
        self.bad_token_status = 403  # Vercel answers 403 `forbidden`; 401 can be chosen
        # A status to answer a rollback/promote with after starting its job (a lost answer).
        self.lose_answers: int | None = None
        self.delays: dict[str, float] = {}
        self._failures: dict[str, deque[Failure]] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v6/deployments", self._list_deployments, name="deployments")
        app.router.add_get("/v9/projects/{project}", self._get_project, name="project")
        app.router.add_post(
            "/v1/projects/{project}/rollback/{deployment}", self._rollback, name="rollback"
        )
        app.router.add_post(
            "/v10/projects/{project}/promote/{deployment}", self._promote, name="promote"
        )
        app.router.add_get(
            "/v1/projects/{project}/rolling-release", self._get_rolling, name="rolling"
        )
        app.router.add_post(
            "/v1/projects/{project}/rolling-release/abort", self._abort, name="rolling-abort"
        )
        app.router.add_post(
            "/v1/projects/{project}/rolling-release/complete",
            self._complete,
            name="rolling-complete",
        )
        # Handlers of clients that gave up (a request timeout) are cancelled at once.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeVercel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- setting up ---------------------------------------------------------------------------

    def add_project(
        self, name: str = PROJECT_NAME, versions: tuple[str, ...] = VERSIONS
    ) -> FakeProject:
        """Add a project with one READY production deployment per version, the last serving."""
        project = FakeProject(id=f"prj_{secrets.token_hex(10)}", name=name)
        self.projects[project.id] = project
        for version in versions:
            self.add_deployment(project, {"version": version})
        if project.deployments:
            project.production = project.deployments[-1].uid
        return project

    def add_deployment(
        self,
        project: FakeProject,
        meta: dict[str, str] | None = None,
        *,
        state: str = "READY",
        target: str | None = "production",
        rollback_candidate: bool = True,
        substate: str = "PROMOTED",
    ) -> FakeDeployment:
        """Add a deployment created after every earlier one (a staged one never served)."""
        number = next(_counter)
        suffix = secrets.token_hex(5)
        deployment = FakeDeployment(
            uid=f"dpl_{secrets.token_hex(12)}",
            url=f"{project.name}-{suffix}-rollbot.vercel.app",
            # A minute apart, in the past, strictly increasing across the whole session.
            created=int(time.time() * 1000) - 10_000_000 + number * 60_000,
            meta=dict(meta or {}),
            project_id=project.id,
            state=state,
            target=target,
            rollback_candidate=rollback_candidate and substate != "STAGED",
            substate=substate,
        )
        project.deployments.append(deployment)
        return deployment

    def start_rolling_release(self, version: str, percent: int = 10) -> FakeDeployment:
        """Deploy `version` as the canary of a rolling release over what production serves."""
        project = self.project
        assert project.production is not None, "a rolling release needs a current deployment"
        canary = self.add_deployment(
            project, {"version": version}, rollback_candidate=False, substate="ROLLING"
        )
        project.rolling = RollingRelease(project.production, canary.uid, percent)
        return canary

    @property
    def project(self) -> FakeProject:
        """The only (or first) project."""
        return next(iter(self.projects.values()))

    def settings(self, **overrides: Any) -> Json:
        """Provider settings aimed at this fake and its first project, quick to poll."""
        return {
            "provider": "vercel",
            "api_url": self.url,
            "team_id": self.team_id,
            "project": self.project.name,
            "poll_interval_seconds": 0.05,
            "promote_timeout_seconds": 5,
            "request_timeout_seconds": 2,
            **overrides,
        }

    # -- knobs --------------------------------------------------------------------------------

    def fail(
        self,
        route: Route,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
        extra: Json | None = None,
        during_job: bool = False,
    ) -> None:
        """Answer the next `times` requests of a route with this error instead."""
        default_code, default_message = _DEFAULT_ERRORS.get(status, ("bad_request", "Bad request"))
        error: Json = {"code": code or default_code, "message": message or default_message}
        error.update(extra or {})
        queue = self._failures.setdefault(route, deque())
        queue.extend(
            Failure(status, {"error": error}, dict(headers or {}), during_job) for _ in range(times)
        )

    def fail_html(self, route: Route, status: int = 502, *, times: int = 1) -> None:
        """Answer the next `times` requests of a route with the CDN's HTML error page."""
        page = CDN_ERROR_PAGE.format(status=status)
        headers = {"Content-Type": "text/html; charset=UTF-8", "Server": "cloudflare"}
        queue = self._failures.setdefault(route, deque())
        queue.extend(Failure(status, page, headers) for _ in range(times))

    def rate_limit(
        self,
        route: Route,
        *,
        times: int = 1,
        retry_after: int | None = 1,
        reset_in: int = 1,
        status: int = 429,
        during_job: bool = False,
    ) -> None:
        """Answer the next `times` requests of a route with 429, as Vercel does."""
        reset = int(time.time()) + max(reset_in, retry_after or 0)
        headers = {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset),
        }
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        limit = {"remaining": 0, "reset": reset, "resetMs": reset * 1000, "total": 100}
        self.fail(
            route,
            status,
            code="rate_limited",
            message=f"The rate limit of 100 exceeded for '{route}'. Try again in {retry_after} s",
            times=times,
            headers=headers,
            extra={"limit": limit},
            during_job=during_job,
        )

    def slow(self, route: Route, seconds: float) -> None:
        """Delay every answer of a route."""
        self.delays[route] = seconds

    def routed(self, route: Route) -> list[Call]:
        """Return the requests one route received."""
        return [c for c in self.calls if c.route == route]

    def serving(self, project: FakeProject | None = None) -> FakeDeployment:
        """Return what production serves now (jobs advanced to this moment)."""
        project = project or self.project
        _advance(project)
        serving = project.serving()
        assert serving is not None, f"{project.name} has no production deployment"
        return serving

    # -- the server ---------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.name or "unknown"
        self.calls.append(
            Call(
                route,
                request.method,
                request.path,
                dict(request.query),
                request.headers.get("Authorization"),
            )
        )
        if delay := self.delays.get(route):
            await asyncio.sleep(delay)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        failure = self._next_failure(route, request)
        if failure is not None:
            status, headers = failure.status, failure.headers
            if isinstance(failure.body, str):
                return web.Response(body=failure.body.encode(), status=status, headers=headers)
            return web.json_response(failure.body, status=status, headers=headers)
        return await handler(request)

    def _next_failure(self, route: str, request: web.Request) -> Failure | None:
        """Take the next injected answer of a route, if one applies now."""
        queue = self._failures.get(route)
        if not queue:
            return None
        if queue[0].during_job:
            project = self._find_project(request.match_info.get("project", ""))
            if project is None or project.job is None or project.job.status not in RUNNING:
                return None
        return queue.popleft()

    def _refuse(self, request: web.Request) -> web.Response | None:
        """Check the bearer token and the team scope, as Vercel does before anything else."""
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Bearer "):
            return _error(
                403,
                "forbidden",
                "The request is missing an authentication token",
                missingToken=True,
            )
        if authorization.removeprefix("Bearer ") != self.token:
            return _error(self.bad_token_status, "forbidden", "Not authorized", invalidToken=True)
        team = request.query.get("teamId")
        if self.team_id is not None and team is None:
            # Chosen: without teamId the token's personal scope is searched, where a team's
            # project does not exist.
            return _error(404, "not_found", "Project not found")
        if team is not None and team != self.team_id:
            # Chosen: a team the token cannot act for.
            return _error(403, "forbidden", "You don't have permission to access this team")
        return None

    def _find_project(self, id_or_name: str) -> FakeProject | None:
        for project in self.projects.values():
            if id_or_name in (project.id, project.name):
                _advance(project)
                return project
        return None

    async def _list_deployments(self, request: web.Request) -> web.Response:
        query = request.query
        project = self._find_project(query.get("projectId", ""))
        if project is None:
            return _error(404, "not_found", "Project not found")
        found = sorted(project.deployments, key=lambda d: d.created, reverse=True)
        if "target" in query:
            found = [d for d in found if d.target == query["target"]]
        if "state" in query:
            states = set(query["state"].split(","))
            found = [d for d in found if d.state in states]
        if "until" in query:
            found = [d for d in found if d.created < int(query["until"])]
        for key, value in query.items():
            if key.startswith("meta-"):
                found = [d for d in found if d.meta.get(key.removeprefix("meta-")) == value]
        limit = min(int(query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
        page, more = found[:limit], len(found) > limit
        pagination = {
            "count": len(page),
            "next": page[-1].created if more and page else None,
            "prev": page[0].created if page else None,
        }
        return web.json_response(
            {"deployments": [d.listed(project.name) for d in page], "pagination": pagination}
        )

    async def _get_project(self, request: web.Request) -> web.Response:
        project = self._find_project(request.match_info["project"])
        if project is None:
            return _error(404, "not_found", "Project not found")
        rollback_info = request.query.get("rollbackInfo") == "true"
        return web.json_response(project.as_json(self.account_id, rollback_info))

    async def _get_rolling(self, request: web.Request) -> web.Response:
        project = self._find_project(request.match_info["project"])
        if project is None:
            return _error(404, "not_found", "Project not found")
        rolling = project.rolling.as_json(project) if project.rolling else None
        return web.json_response({"rollingRelease": rolling})

    async def _abort(self, request: web.Request) -> web.Response:
        return await self._end_rolling(request, "ABORTED")

    async def _complete(self, request: web.Request) -> web.Response:
        return await self._end_rolling(request, "COMPLETE")

    async def _end_rolling(self, request: web.Request, state: str) -> web.Response:
        """Abort (traffic back to the current deployment) or complete (all to the canary)."""
        project = self._find_project(request.match_info["project"])
        if project is None:
            return _error(404, "not_found", "Project not found")
        rolling = project.rolling
        if rolling is None or rolling.state != "ACTIVE":
            return _error(400, "bad_request", "There is no active rolling release")
        body = await request.json() if request.can_read_body else {}
        if body.get("canaryDeploymentId") not in (None, rolling.canary_id):
            return _error(400, "bad_request", "The canary deployment does not match")
        rolling.state = state
        canary = project.deployment(rolling.canary_id)
        if state == "COMPLETE" and canary is not None:
            project.production = canary.uid
            canary.substate, canary.rollback_candidate = "PROMOTED", True
        elif canary is not None:
            canary.substate = "STAGED"  # chosen: an aborted canary never served all traffic
        return web.json_response({"rollingRelease": rolling.as_json(project)})

    async def _rollback(self, request: web.Request) -> web.Response:
        return self._start_job(request, "rollback", 201)

    async def _promote(self, request: web.Request) -> web.Response:
        return self._start_job(request, "promote", 202)

    def _start_job(self, request: web.Request, kind: str, status: int) -> web.Response:
        project = self._find_project(request.match_info["project"])
        if project is None:
            return _error(404, "not_found", "Project not found")
        deployment = project.deployment(request.match_info["deployment"])
        if deployment is None:
            return _error(404, "not_found", "Deployment not found")
        refused = _refuse_job(project, deployment, kind)
        if refused is not None:
            return refused
        project.job = AliasJob(
            from_id=project.production,
            to_id=deployment.uid,
            kind=kind,
            requested_ms=int(time.time() * 1000),
            started=time.monotonic(),
            seconds=self.job_seconds,
            outcome=self.job_outcome,
        )
        if self.lose_answers is not None:
            code, message = _DEFAULT_ERRORS[self.lose_answers]
            return _error(self.lose_answers, code, message)
        return web.Response(status=status)


RUNNING = ("pending", "in-progress")
CDN_ERROR_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><title>api.vercel.com | {status}: Bad gateway</title></head>
<body><div id="cf-error-details" class="cf-error-details-wrapper">
<h1><span class="cf-error-type">Bad gateway</span>
<span class="code-label">Error code {status}</span></h1>
<p>The web server reported a bad gateway error.</p>
<p>Cloudflare Ray ID: <strong>8f2a6c1b0d4e7a93</strong> &bull; Your IP: 127.0.0.1</p>
</div></body></html>"""

_DEFAULT_ERRORS = {
    400: ("bad_request", "An english description of the error that just occurred"),
    401: ("forbidden", "Not authorized"),
    403: ("forbidden", "Not authorized"),
    404: ("not_found", "Could not find the resource"),
    409: ("conflict", "The request conflicts with the current state"),
    500: ("internal_server_error", "An unexpected internal error occurred"),
    502: ("internal_server_error", "An unexpected internal error occurred"),
    503: ("internal_server_error", "An unexpected internal error occurred"),
}


def _refuse_job(project: FakeProject, deployment: FakeDeployment, kind: str) -> web.Response | None:
    """Refuse a rollback or promote Vercel would not start."""
    if project.job is not None and project.job.status in ("pending", "in-progress"):
        # Chosen: the reference lists 409 for both endpoints without a body; this one.
        return _error(
            409, "conflict", "A rollback or promotion is already in progress for this project"
        )
    if project.rolling is not None and project.rolling.state == "ACTIVE":
        # Chosen: the docs leave open how an alias job and an active rollout interact.
        return _error(409, "conflict", "A rolling release is in progress for this project")
    if project.production == deployment.uid:
        return _error(409, "conflict", "The deployment is already serving production")
    if kind == "rollback" and deployment.substate == "STAGED":
        return _error(400, "bad_request", "The deployment is not eligible for Instant Rollback")
    if deployment.state != "READY" or deployment.target != "production":
        return _error(400, "bad_request", "The deployment is not a READY production deployment")
    if kind == "rollback" and not deployment.rollback_candidate:
        return _error(400, "bad_request", "The deployment is not eligible for Instant Rollback")
    return None


def _advance(project: FakeProject) -> None:
    """Move the project's alias job along with time; a succeeded job moves production."""
    job = project.job
    if job is None or job.status not in ("pending", "in-progress"):
        return
    elapsed = time.monotonic() - job.started
    if elapsed < job.seconds / 3:
        return
    if elapsed < job.seconds or job.outcome == "never":
        job.status = "in-progress"
        return
    job.status = job.outcome
    if job.outcome == "succeeded":
        project.production = job.to_id


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)
