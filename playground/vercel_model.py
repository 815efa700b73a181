"""The fake Vercel's projects, deployments, alias jobs and rolling releases, and their rules.

An alias job goes pending -> in-progress -> succeeded (or failed, or never finishes) as time
passes, read lazily; only a succeeded job moves production. Where Vercel's docs are silent
the fake makes a choice, marked "chosen" below.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from playground.vercel_errors import error

Json = dict[str, Any]
JobOutcome = Literal["succeeded", "failed", "never"]

RUNNING = ("pending", "in-progress")
# Chosen: the list's default page size and cap (the reference documents neither).
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


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
    # "Auto-assign Custom Production Domains" (Settings > Environments > Production).
    auto_assign: bool = True
    auto_assign_updated_by: str | None = None

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

    def listing(self, query: Mapping[str, str]) -> Json:
        """The project's deployments as GET /v6/deployments answers this query."""
        found = sorted(self.deployments, key=lambda d: d.created, reverse=True)
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
        return {"deployments": [d.listed(self.name) for d in page], "pagination": pagination}

    def start_job(
        self, deployment: FakeDeployment, kind: str, seconds: float, outcome: JobOutcome
    ) -> None:
        """Start a rollback or promote from what production serves to `deployment`."""
        self.job = AliasJob(
            from_id=self.production,
            to_id=deployment.uid,
            kind=kind,
            requested_ms=int(time.time() * 1000),
            started=time.monotonic(),
            seconds=seconds,
            outcome=outcome,
        )

    def end_rolling(self, state: str) -> None:
        """Abort (traffic back to the current deployment) or complete (all to the canary)."""
        assert self.rolling is not None, "no rolling release to end"
        self.rolling.state = state
        canary = self.deployment(self.rolling.canary_id)
        if state == "COMPLETE" and canary is not None:
            self.production = canary.uid
            canary.substate, canary.rollback_candidate = "PROMOTED", True
        elif canary is not None:
            canary.substate = "STAGED"  # chosen: an aborted canary never served all traffic

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
            "autoAssignCustomDomains": self.auto_assign,
            "autoAssignCustomDomainsUpdatedBy": self.auto_assign_updated_by,
        }
        if with_rollback_info:
            body["lastAliasRequest"] = self.job.as_json() if self.job else None
        return body


def refuse_job(project: FakeProject, deployment: FakeDeployment, kind: str) -> web.Response | None:
    """Refuse a rollback or promote Vercel would not start."""
    if project.job is not None and project.job.status in RUNNING:
        # Chosen: the reference lists 409 for both endpoints without a body; this one.
        return error(
            409, "conflict", "A rollback or promotion is already in progress for this project"
        )
    if project.rolling is not None and project.rolling.state == "ACTIVE":
        # Chosen: the docs leave open how an alias job and an active rollout interact.
        return error(409, "conflict", "A rolling release is in progress for this project")
    if project.production == deployment.uid:
        return error(409, "conflict", "The deployment is already serving production")
    if kind == "rollback" and deployment.substate == "STAGED":
        return error(400, "bad_request", "The deployment is not eligible for Instant Rollback")
    if deployment.state != "READY" or deployment.target != "production":
        return error(400, "bad_request", "The deployment is not a READY production deployment")
    if kind == "rollback" and not deployment.rollback_candidate:
        return error(400, "bad_request", "The deployment is not eligible for Instant Rollback")
    return None


def advance(project: FakeProject) -> None:
    """Move the project's alias job along with time; a succeeded job moves production."""
    job = project.job
    if job is None or job.status not in RUNNING:
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
