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
- Deployments `add_project` makes carry what Vercel's GitHub integration records in
  ``meta``: ``githubCommitSha``, ``githubCommitRef`` and ``githubCommitMessage``.
- Deployments that are not rollback candidates: previews (``target: null``), CANCELED
  and ERROR ones, and staged production builds (``readySubstate: STAGED``, made with
  ``vercel deploy --prod --skip-domain``: READY, production, never served); the canary
  of a rolling release reads ``readySubstate: ROLLING``.
- ``PATCH /v9/projects/{idOrName}`` ("Update an existing project") -> 200 and the project;
  the fake takes ``autoAssignCustomDomains`` (boolean) and
  ``autoAssignCustomDomainsUpdatedBy`` (string), which GET returns too, and answers 400
  ``bad_request`` for a property it does not hold or a value of the wrong type. A token whose
  role may not change project settings (a Viewer) gets 403 ``forbidden`` (chosen wording).
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

The projects, deployments, alias jobs and rolling releases and the rules they follow are in
`playground/vercel_model.py`, the error answers and the knobs that inject them in
`playground/vercel_errors.py`. Where Vercel's docs are silent the fake makes a choice,
marked "chosen" where it is made.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from playground.vercel_errors import DEFAULT_ERRORS, FailureKnobs, Route, error
from playground.vercel_model import (
    RUNNING,
    FakeDeployment,
    FakeProject,
    JobOutcome,
    RollingRelease,
    advance,
    refuse_job,
)

Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TEAM_ID = "team_rollbot0test"
PROJECT_NAME = "frontend"
VERSIONS = ("1.2.2", "1.2.3", "1.2.4")  # production serves the last one
_counter = itertools.count(1)


@dataclass
class Call:
    """One request the fake received."""

    route: str
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None


class FakeVercel(FailureKnobs):
    """The fake API server with its projects and the knobs tests turn."""

    def __init__(self, token: str | None = None, team_id: str | None = TEAM_ID) -> None:
        super().__init__()
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
        # A status to answer a project update with after applying it (a lost answer).
        self.lose_update_answer: int | None = None
        # The token may read the project but not change its settings (a Viewer's role).
        self.read_only = False
        self.delays: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v6/deployments", self._list_deployments, name="deployments")
        app.router.add_get("/v9/projects/{project}", self._get_project, name="project")
        app.router.add_patch("/v9/projects/{project}", self._update_project, name="project-update")
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
            self.add_deployment(project, git_meta(version))
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
            project, git_meta(version), rollback_candidate=False, substate="ROLLING"
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

    def slow(self, route: Route, seconds: float) -> None:
        """Delay every answer of a route."""
        self.delays[route] = seconds

    def routed(self, route: Route) -> list[Call]:
        """Return the requests one route received."""
        return [c for c in self.calls if c.route == route]

    def serving(self, project: FakeProject | None = None) -> FakeDeployment:
        """Return what production serves now (jobs advanced to this moment)."""
        project = project or self.project
        advance(project)
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
        failure = self._next_failure(route, lambda: self._job_running(request))
        if failure is not None:
            return failure.answer()
        return await handler(request)

    def _job_running(self, request: web.Request) -> bool:
        """Say whether the project a request names has an alias job running."""
        project = self._find_project(request.match_info.get("project", ""))
        return project is not None and project.job is not None and project.job.status in RUNNING

    def _refuse(self, request: web.Request) -> web.Response | None:
        """Check the bearer token and the team scope, as Vercel does before anything else."""
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Bearer "):
            return error(
                403,
                "forbidden",
                "The request is missing an authentication token",
                missingToken=True,
            )
        if authorization.removeprefix("Bearer ") != self.token:
            return error(self.bad_token_status, "forbidden", "Not authorized", invalidToken=True)
        team = request.query.get("teamId")
        if self.team_id is not None and team is None:
            # Chosen: without teamId the token's personal scope is searched, where a team's
            # project does not exist.
            return error(404, "not_found", "Project not found")
        if team is not None and team != self.team_id:
            # Chosen: a team the token cannot act for.
            return error(403, "forbidden", "You don't have permission to access this team")
        return None

    def _find_project(self, id_or_name: str) -> FakeProject | None:
        for project in self.projects.values():
            if id_or_name in (project.id, project.name):
                advance(project)
                return project
        return None

    async def _list_deployments(self, request: web.Request) -> web.Response:
        project = self._find_project(request.query.get("projectId", ""))
        if project is None:
            return error(404, "not_found", "Project not found")
        return web.json_response(project.listing(request.query))

    async def _get_project(self, request: web.Request) -> web.Response:
        project = self._find_project(request.match_info["project"])
        if project is None:
            return error(404, "not_found", "Project not found")
        rollback_info = request.query.get("rollbackInfo") == "true"
        return web.json_response(project.as_json(self.account_id, rollback_info))

    async def _update_project(self, request: web.Request) -> web.Response:
        project = self._find_project(request.match_info["project"])
        if project is None:
            return error(404, "not_found", "Project not found")
        if self.read_only:
            return error(
                403, "forbidden", "You don't have permission to update the project settings"
            )
        body = await request.json()
        types = {"autoAssignCustomDomains": bool, "autoAssignCustomDomainsUpdatedBy": str}
        for key, value in body.items():
            if key not in types:
                return error(400, "bad_request", f"Invalid request: should NOT have `{key}`")
            if not isinstance(value, types[key]):
                return error(400, "bad_request", f"Invalid request: `{key}` has a wrong type")
        if "autoAssignCustomDomains" in body:
            project.auto_assign = body["autoAssignCustomDomains"]
            project.auto_assign_updated_by = body.get("autoAssignCustomDomainsUpdatedBy")
        if self.lose_update_answer is not None:
            code, message = DEFAULT_ERRORS[self.lose_update_answer]
            return error(self.lose_update_answer, code, message)
        return web.json_response(project.as_json(self.account_id, False))

    async def _get_rolling(self, request: web.Request) -> web.Response:
        project = self._find_project(request.match_info["project"])
        if project is None:
            return error(404, "not_found", "Project not found")
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
            return error(404, "not_found", "Project not found")
        rolling = project.rolling
        if rolling is None or rolling.state != "ACTIVE":
            return error(400, "bad_request", "There is no active rolling release")
        body = await request.json() if request.can_read_body else {}
        if body.get("canaryDeploymentId") not in (None, rolling.canary_id):
            return error(400, "bad_request", "The canary deployment does not match")
        project.end_rolling(state)
        return web.json_response({"rollingRelease": rolling.as_json(project)})

    async def _rollback(self, request: web.Request) -> web.Response:
        return self._start_job(request, "rollback", 201)

    async def _promote(self, request: web.Request) -> web.Response:
        return self._start_job(request, "promote", 202)

    def _start_job(self, request: web.Request, kind: str, status: int) -> web.Response:
        project = self._find_project(request.match_info["project"])
        if project is None:
            return error(404, "not_found", "Project not found")
        deployment = project.deployment(request.match_info["deployment"])
        if deployment is None:
            return error(404, "not_found", "Deployment not found")
        refused = refuse_job(project, deployment, kind)
        if refused is not None:
            return refused
        project.start_job(deployment, kind, self.job_seconds, self.job_outcome)
        if self.lose_answers is not None:
            code, message = DEFAULT_ERRORS[self.lose_answers]
            return error(self.lose_answers, code, message)
        return web.Response(status=status)


def commit_of(version: str) -> str:
    """Return the (made-up) commit a release was built from."""
    return hashlib.sha1(version.encode(), usedforsecurity=False).hexdigest()


def git_meta(version: str, branch: str = "main") -> dict[str, str]:
    """Return the meta of a deployment Vercel's GitHub integration made for a release."""
    return {
        "version": version,
        "githubCommitSha": commit_of(version),
        "githubCommitRef": branch,
        "githubCommitMessage": f"Release {version}",
    }
