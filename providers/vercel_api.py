"""What the vercel provider reads from Vercel's REST API: paths, deployments, names, errors.

What this module relies on, from Vercel's REST API reference and its CLI's source:

- ``GET /v6/deployments?projectId=&target=production&state=READY&limit=`` lists deployments
  newest first with ``uid``, ``url`` (a host, no scheme), ``created``/``createdAt`` (ms),
  ``state``/``readyState``, ``readySubstate`` (STAGED: a production build that was never
  promoted, ``vercel deploy --prod --skip-domain``; ROLLING: the canary of a rolling
  release; PROMOTED), ``target``, ``meta`` and ``isRollbackCandidate``.
- ``GET /v9/projects/{idOrName}``: ``targets.production`` is the deployment the production
  domains serve now; ``lastAliasRequest`` (``jobStatus`` pending | in-progress | succeeded
  | failed | skipped, ``fromDeploymentId``, ``toDeploymentId``, ``type`` rollback |
  promote, ``requestedAt``) is only included with ``rollbackInfo=true``, which is how
  ``vercel rollback status`` asks for it.
- A deployment made by a Git integration records its commit and branch in ``meta``:
  ``githubCommitSha``/``githubCommitRef`` (``gitlab…`` and ``bitbucket…`` likewise).
- ``POST /v1/projects/{projectId}/rollback/{deploymentId}`` (201) and
  ``POST /v10/projects/{projectId}/promote/{deploymentId}`` (201 or 202) only start an
  alias job: success is read from ``lastAliasRequest``.
- ``GET /v1/projects/{idOrName}/rolling-release`` returns the project's rolling release
  (``state`` ACTIVE | COMPLETE | ABORTED, ``currentDeployment``, ``canaryDeployment``,
  ``activeStage.targetPercentage``) or null; ``POST .../rolling-release/abort`` sends all
  traffic back to the current deployment: the rolling-release config documents "abort"
  as the way to roll back a rollout in flight, and "complete" as promoting the canary.
- Errors are ``{"error": {"code", "message"}}``; a bad token gets 403 ``forbidden``; 429
  ``rate_limited`` comes with ``X-RateLimit-Limit/Remaining/Reset`` (epoch seconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from providers.base import Transient
from providers.preflight_lines import SHORT_SHA

Json = dict[str, Any]

DEPLOYMENTS_PATH = "/v6/deployments"
PROJECT_PATH = "/v9/projects/{project}"
ROLLING_PATH = "/v1/projects/{project}/rolling-release"
ABORT_PATH = "/v1/projects/{project}/rolling-release/abort"
MUTATION_PATHS = {
    "rollback": "/v1/projects/{project}/rollback/{deployment}",
    "promote": "/v10/projects/{project}/promote/{deployment}",
}
# The documented answers of the mutations; 200 is accepted too in case one answers so.
ACCEPTED = frozenset({200, 201, 202})
RUNNING = frozenset({"pending", "in-progress"})
# Deployments that never served all production traffic: not a way back.
NEVER_SERVED = {
    "STAGED": "a staged production build that never served production (readySubstate STAGED)",
    "ROLLING": "the canary of the active rolling release (readySubstate ROLLING)",
}
# The grammar rollbot checks chat versions against (bot/names.py): a meta version that
# does not fit it could never be typed back, so such a deployment is named by its uid.
NAMEABLE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
SEMVER_LIKE = re.compile(r"[vV]?\d")
# The Git integrations whose deployments carry `<forge>CommitSha` and `<forge>CommitRef` in meta.
GIT_FORGES = ("github", "gitlab", "bitbucket")


@dataclass(frozen=True)
class Deployment:
    """One READY production deployment, as much of it as a rollback needs."""

    uid: str
    url: str
    created_ms: int
    meta_version: str | None
    rollback_candidate: bool | None = None
    substate: str | None = None
    state: str = "READY"
    target: str | None = "production"
    # The commit and branch Vercel's Git integration recorded in meta; '' when unknown.
    commit: str = ""
    branch: str = ""

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
            substate=raw.get("readySubstate"),
            state=str(raw.get("readyState") or raw.get("state") or "UNKNOWN"),
            target=raw.get("target"),
            commit=_git_meta(meta, "CommitSha").lower(),
            branch=_git_meta(meta, "CommitRef"),
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
class RollingRelease:
    """An ACTIVE rolling release: the canary serves `percent` of traffic, `current` the rest."""

    current_id: str
    canary_id: str
    canary_link: str
    percent: float | None

    @classmethod
    def parse(cls, body: Json) -> RollingRelease | None:
        """Read GET .../rolling-release; None unless a release is ACTIVE."""
        raw = body.get("rollingRelease")
        if not isinstance(raw, dict) or raw.get("state") != "ACTIVE":
            return None
        current, canary = raw.get("currentDeployment") or {}, raw.get("canaryDeployment") or {}
        if not current.get("id") or not canary.get("id"):
            return None
        url = canary.get("url")
        percent = (raw.get("activeStage") or {}).get("targetPercentage")
        return cls(
            current_id=str(current["id"]),
            canary_id=str(canary["id"]),
            canary_link=f"https://{url}" if url else str(canary["id"]),
            percent=float(percent) if isinstance(percent, int | float) else None,
        )

    def share(self) -> str:
        """Say how much traffic the canary gets."""
        return f"{self.percent:g}% of traffic" if self.percent is not None else "part of traffic"


@dataclass(frozen=True)
class Snapshot:
    """The project, its READY production deployments and its rolling release, read together."""

    project_id: str
    project_name: str
    production: Deployment | None
    job: Json | None
    deployments: list[Deployment]
    names: dict[str, str]
    rolling: RollingRelease | None = None

    def name(self, deployment: Deployment) -> str:
        """Return the version name rollbot shows for a deployment."""
        return self.names[deployment.uid]

    def serving(self) -> str:
        """Say what production serves, e.g. `https://app-x.vercel.app (v1.2.4)`."""
        if self.production is None:
            return "nothing (the project has no production deployment)"
        return f"{self.production.link} ({self.name(self.production)})"

    def named(self, uid: str | None) -> str:
        """Name a deployment by uid: its link and version when listed, else the uid."""
        found = next((d for d in self.deployments if d.uid == uid), None)
        return f"{found.link} ({self.name(found)})" if found else str(uid)

    def describe(self) -> str:
        """Say what production serves, and any alias job or rolling release under way."""
        line = f"Vercel project `{self.project_name}`: production serves {self.serving()}"
        job = self.job or {}
        if job.get("jobStatus") in RUNNING:
            towards = self.named(job.get("toDeploymentId"))
            line += f"; a {job.get('type')} to {towards} is {job.get('jobStatus')}"
        if self.rolling is not None:
            line += (
                f"; a rolling release of {self.rolling.canary_link} serves {self.rolling.share()}"
            )
        return line


def production_of(project: Json, meta_key: str) -> Deployment | None:
    """Return the deployment production serves: the project's `targets.production`."""
    target = (project.get("targets") or {}).get("production")
    if not target or not target.get("id"):
        return None
    # What production serves is a READY production deployment, whatever the answer leaves out.
    return Deployment.parse({"target": "production", "readyState": "READY", **target}, meta_key)


def _git_meta(meta: Json, suffix: str) -> str:
    """Return a Git integration's meta value (githubCommitSha, gitlabCommitRef, …), or ''."""
    for forge in GIT_FORGES:
        value = meta.get(f"{forge}{suffix}")
        if value:
            return str(value).strip()
    return ""


def names_of(deployments: list[Deployment]) -> dict[str, str]:
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


def label_of(deployment: Deployment) -> str:
    """Return the name people know a deployment by: its meta version, else its short commit."""
    return _display(deployment.meta_version) or deployment.commit[:SHORT_SHA]


def _display(meta_version: str | None) -> str | None:
    if not meta_version:
        return None
    name = f"v{meta_version}" if meta_version[0].isdigit() else meta_version
    return name if NAMEABLE.fullmatch(name) else None


def version_key(text: str) -> str:
    """Compare versions without a leading v: `v1.2.3` and `1.2.3` are the same release."""
    return text[1:] if SEMVER_LIKE.match(text) and text[0] in "vV" else text


def is_ours(job: Json | None, before: Json | None, deployment: Deployment) -> bool:
    """Return True when `job` is a new alias job towards `deployment` (not the one before)."""
    if not job or job.get("toDeploymentId") != deployment.uid:
        return False
    return not before or job.get("requestedAt") != before.get("requestedAt")


def json_of(response: httpx.Response, what: str) -> Json:
    """Return a JSON object answer; anything else is a Transient failure."""
    try:
        body = response.json()
    except ValueError as exc:
        raise Transient(f"Vercel: {what}: the answer was not JSON") from exc
    if not isinstance(body, dict):
        raise Transient(f"Vercel: {what}: unexpected answer ({type(body).__name__})")
    return body


def error_body(response: httpx.Response) -> tuple[str, str]:
    """Return Vercel's error code and message, or empty strings."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")[:300]
