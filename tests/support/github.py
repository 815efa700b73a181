"""A strict local GitHub: the REST calls a git rollback makes, and pushes refused as GitHub does.

Documented behaviours it reproduces (docs.github.com/rest, and what git prints on a push):

- Authentication: a missing or wrong ``Authorization: Bearer`` is 401 "Bad credentials".
  A classic token's scopes come back in ``X-OAuth-Scopes`` on every answer; fine-grained
  and app tokens send no such header (``scopes=None``).
- ``X-GitHub-Api-Version`` other than a supported date is 400.
- Primary rate limit: every answer carries ``x-ratelimit-limit/remaining/used/reset/
  resource``; past the limit, 403 "API rate limit exceeded" with ``x-ratelimit-remaining:
  0``. Secondary rate limit: 403 "You have exceeded a secondary rate limit" with
  ``retry-after``.
- ``GET /repos/{o}/{r}/branches/{b}``: ``protected`` and ``protection.required_status_checks``
  (readable without admin rights); a missing branch is 404 "Branch not found".
- ``GET /repos/{o}/{r}/branches/{b}/protection``: 404 "Branch not protected" when there
  is no classic protection (rulesets do not show here), 403 without admin rights.
- ``GET /repos/{o}/{r}/rules/branches/{b}``: every active rule of every branch ruleset
  that applies, each with its ``ruleset_id``; ``GET /repos/{o}/{r}/rulesets/{id}`` tells
  ``target`` ("branch", "tag"), ``enforcement``, ``conditions.ref_name.include/exclude``
  (full ref patterns in fnmatch syntax where ``*`` stops at ``/``, or ``~ALL``), the
  ``rules`` and ``current_user_can_bypass`` ("always", "pull_requests_only", "never").
- ``GET /repos/{o}/{r}/rulesets``: a summary of each ruleset (no conditions, no rules);
  rulesets of the organization only with ``includes_parents=true`` (the default).
- ``POST .../actions/workflows/{w}/dispatches``: 204; 404 for an unknown workflow; 422
  "Workflow does not have 'workflow_dispatch' trigger", "No ref found for: x" and
  "Unexpected inputs provided: [...]" as GitHub validates; 403 "Resource not accessible
  by personal access token" for a token without "Actions: write". Only an accepted dispatch
  starts a run (it has no id in the answer: the run is found by listing).
- ``GET .../actions/workflows/{w}/runs``: runs newest first with ``html_url``,
  ``created_at``, ``event``, ``head_branch``, ``status``; filtered by ``event``,
  ``branch`` and ``created`` (``>=``, ``>``, ``<=``, ``<``, ``a..b`` or a date), as
  documented in docs.github.com/rest/actions/workflow-runs.
- Commit statuses as ``tests.support.github_statuses`` documents them.
- Pushes are refused as GitHub refuses them by ``tests.support.github_pushes``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.support.github_statuses import CommitStatuses

SUPPORTED_API_VERSIONS = {"2022-11-28", "2026-03-10"}
DOCS = "https://docs.github.com/rest"


@dataclass
class Dispatch:
    """One workflow_dispatch request the fake received."""

    path: str
    authorization: str
    body: dict[str, Any]


@dataclass
class Protection:
    """Classic branch protection of one branch."""

    checks: list[str] = field(default_factory=list)
    reviews: int = 0
    enforce_admins: bool = True


@dataclass
class Ruleset:
    """A ruleset on one branch, or (target "tag") on the tags `include` names.

    `rules` are GitHub's rule objects; `source_type` "Organization" is a parent's ruleset.
    """

    id: int
    name: str
    branch: str
    rules: list[dict[str, Any]]
    bypass: str = "never"
    target: str = "branch"
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    enforcement: str = "active"
    source_type: str = "Repository"

    def ref_names(self) -> dict[str, list[str]]:
        """The ruleset's ``conditions.ref_name``."""
        include = self.include or [f"refs/heads/{self.branch}"]
        return {"include": include, "exclude": self.exclude}


@dataclass
class Run:
    """One workflow run."""

    id: int
    workflow: str
    branch: str
    created_at: datetime
    event: str = "workflow_dispatch"
    status: str = "queued"


def required_checks(*contexts: str) -> dict[str, Any]:
    """A ruleset rule that requires status checks."""
    checks = [{"context": c} for c in contexts]
    return {"type": "required_status_checks", "parameters": {"required_status_checks": checks}}


PULL_REQUEST = {"type": "pull_request", "parameters": {"required_approving_review_count": 1}}
CREATION = {"type": "creation"}


def tag_ruleset(id: int, name: str, *include: str, bypass: str = "never", **more: Any) -> Ruleset:
    """A ruleset restricting the creation of the tags `include` names (e.g. refs/tags/v*)."""
    return Ruleset(
        id, name, "", [CREATION], bypass=bypass, target="tag", include=list(include), **more
    )


def ref_matches(pattern: str, ref: str) -> bool:
    """Match a ref as GitHub's rulesets do: fnmatch where `*` stops at `/`, `**` does not."""
    if pattern == "~ALL":
        return True
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    wild = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.fullmatch("".join(wild.get(p, re.escape(p)) for p in parts), ref) is not None


def covers(ruleset: Ruleset, ref: str) -> bool:
    """Return True when the ruleset's ref conditions take in `ref`."""
    names = ruleset.ref_names()
    return any(ref_matches(p, ref) for p in names["include"]) and not any(
        ref_matches(p, ref) for p in names["exclude"]
    )


class FakeGitHub:
    """GitHub's REST API for one repository (`acme/web`), strict about what GitHub checks."""

    def __init__(
        self,
        token: str,
        *,
        repository: str = "acme/web",
        scopes: list[str] | None = None,
        admin: bool = False,
        rate_limit: int = 5000,
    ) -> None:
        self.token = token
        self.repository = repository
        # A classic token with repo and workflow scopes unless told otherwise.
        self.scopes: list[str] | None = ["repo", "workflow"] if scopes is None else scopes
        self.admin = admin
        self.rate_limit = rate_limit
        self.used = 0
        self.secondary_limits = 0  # the next N requests hit the secondary rate limit
        self.branches = {"main"}
        self.protections: dict[str, Protection] = {}
        self.rulesets: list[Ruleset] = []
        # Workflow file name -> whether it has a workflow_dispatch trigger with input `version`.
        self.workflows: dict[str, bool] = {"deploy.yml": True, "ci.yml": False}
        self.dispatches: list[Dispatch] = []
        # Whether the token may start workflows ("Actions: write" for a fine-grained token).
        self.actions_write = True
        self.runs: list[Run] = []
        # Tag protection rules of the older kind (GitHub Enterprise Server): name patterns.
        self.protected_tags: list[str] = []
        self.requests: list[tuple[str, str]] = []
        app = web.Application(middlewares=[self._gate])
        repo = "/repos/{owner}/{repo}"
        app.router.add_get(repo + "/branches/{branch:.+}/protection", self._protection)
        app.router.add_get(repo + "/branches/{branch:.+}", self._branch)
        app.router.add_get(repo + "/rules/branches/{branch:.+}", self._rules)
        app.router.add_get(repo + "/rulesets", self._rulesets)
        app.router.add_get(repo + "/rulesets/{id:\\d+}", self._ruleset)
        app.router.add_post(repo + "/actions/workflows/{workflow}/dispatches", self._dispatch)
        app.router.add_get(repo + "/actions/workflows/{workflow}/runs", self._runs)
        self.statuses = CommitStatuses()
        self.statuses.register(app.router, repo)
        self._runner = web.AppRunner(app)
        self.url = ""

    def fine_grained(self) -> None:
        """Use a fine-grained token: no X-OAuth-Scopes header; may it write workflows is hidden."""
        self.scopes = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        await self._runner.cleanup()

    # -- what every answer goes through ------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "Bad credentials")
        version = request.headers.get("X-GitHub-Api-Version")
        if version is not None and version not in SUPPORTED_API_VERSIONS:
            return _error(400, f"Unsupported 'X-GitHub-Api-Version' header: {version}")
        if self.secondary_limits > 0:
            self.secondary_limits -= 1
            answer = _error(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before "
                "you try again.",
            )
            answer.headers["retry-after"] = "1"
            return answer
        if self.used >= self.rate_limit:
            answer = _error(403, "API rate limit exceeded for user ID 1.")
        else:
            self.used += 1
            owner, repo = request.match_info.get("owner"), request.match_info.get("repo")
            if f"{owner}/{repo}" != self.repository:
                answer = _error(404, "Not Found")
            else:
                answer = await handler(request)
        answer.headers.update(self._limit_headers())
        if self.scopes is not None:
            answer.headers["X-OAuth-Scopes"] = ", ".join(self.scopes)
        return answer

    def _limit_headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(0, self.rate_limit - self.used)),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-resource": "core",
        }

    # -- branches and their rules -----------------------------------------------------------

    async def _branch(self, request: web.Request) -> web.Response:
        branch = request.match_info["branch"]
        if branch not in self.branches:
            return _error(404, "Branch not found")
        classic = self.protections.get(branch)
        checks = classic.checks if classic else []
        admins = "everyone" if classic and classic.enforce_admins else "non_admins"
        level = admins if checks else "off"
        return web.json_response(
            {
                "name": branch,
                "commit": {"sha": "0" * 40},
                "protected": classic is not None or any(r.branch == branch for r in self.rulesets),
                "protection": {
                    "enabled": classic is not None,
                    "required_status_checks": {
                        "enforcement_level": level,
                        "contexts": checks,
                        "checks": [{"context": c, "app_id": None} for c in checks],
                    },
                },
                "protection_url": f"{self.url}{request.path}/protection",
            }
        )

    async def _protection(self, request: web.Request) -> web.Response:
        if not self.admin:
            return _error(403, "Must have admin rights to Repository.")
        classic = self.protections.get(request.match_info["branch"])
        if classic is None:
            return _error(404, "Branch not protected")
        body: dict[str, Any] = {
            "url": f"{self.url}{request.path}",
            "enforce_admins": {"enabled": classic.enforce_admins},
        }
        if classic.checks:
            body["required_status_checks"] = {
                "strict": True,
                "contexts": classic.checks,
                "checks": [{"context": c, "app_id": None} for c in classic.checks],
            }
        if classic.reviews:
            body["required_pull_request_reviews"] = {
                "required_approving_review_count": classic.reviews
            }
        return web.json_response(body)

    async def _rules(self, request: web.Request) -> web.Response:
        ref = f"refs/heads/{request.match_info['branch']}"
        rules = [
            {
                **rule,
                "ruleset_source_type": ruleset.source_type,
                "ruleset_source": self._source(ruleset),
                "ruleset_id": ruleset.id,
            }
            for ruleset in self.rulesets
            if ruleset.target == "branch" and ruleset.enforcement == "active"
            if covers(ruleset, ref)
            for rule in ruleset.rules
        ]
        return web.json_response(rules)

    async def _rulesets(self, request: web.Request) -> web.Response:
        parents = request.query.get("includes_parents", "true") == "true"
        listed = [
            {
                "id": r.id,
                "name": r.name,
                "target": r.target,
                "source_type": r.source_type,
                "source": self._source(r),
                "enforcement": r.enforcement,
                "node_id": f"RRS_{r.id}",
                "_links": {"self": {"href": f"{self.url}{request.path}/{r.id}"}},
            }
            for r in self.rulesets
            if parents or r.source_type == "Repository"
        ]
        return web.json_response(listed)

    async def _ruleset(self, request: web.Request) -> web.Response:
        wanted = int(request.match_info["id"])
        parents = request.query.get("includes_parents", "true") == "true"
        found = next((r for r in self.rulesets if r.id == wanted), None)
        if found is None or (found.source_type != "Repository" and not parents):
            return _error(404, "Not Found")
        return web.json_response(
            {
                "id": found.id,
                "name": found.name,
                "target": found.target,
                "source_type": found.source_type,
                "source": self._source(found),
                "enforcement": found.enforcement,
                "conditions": {"ref_name": found.ref_names()},
                "rules": found.rules,
                "current_user_can_bypass": found.bypass,
            }
        )

    def _source(self, ruleset: Ruleset) -> str:
        owner = self.repository.split("/")[0]
        return self.repository if ruleset.source_type == "Repository" else owner

    # -- workflows --------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Problems parsing JSON")
        self.dispatches.append(
            Dispatch(request.path, request.headers.get("Authorization", ""), body)
        )
        if not self.actions_write:
            return _error(403, "Resource not accessible by personal access token")
        workflow = request.match_info["workflow"]
        dispatchable = self.workflows.get(workflow)
        if dispatchable is None:
            return _error(404, "Not Found")
        if not dispatchable:
            return _error(422, "Workflow does not have 'workflow_dispatch' trigger")
        ref = str(body.get("ref", ""))
        if ref.removeprefix("refs/heads/") not in self.branches:
            return _error(422, f"No ref found for: {ref}")
        unexpected = sorted(set(body.get("inputs", {})) - {"version"})
        if unexpected:
            return _error(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
        branch = ref.removeprefix("refs/heads/")
        self.runs.append(Run(len(self.runs) + 1, workflow, branch, datetime.now(UTC)))
        return web.Response(status=204)

    async def _runs(self, request: web.Request) -> web.Response:
        workflow = request.match_info["workflow"]
        if workflow not in self.workflows:
            return _error(404, "Not Found")
        query = request.query
        try:
            created = _created_filter(query.get("created"))
        except ValueError:
            return _error(422, f"Invalid value for created: {query.get('created')}")
        runs = [
            {
                "id": run.id,
                "name": workflow,
                "event": run.event,
                "status": run.status,
                "head_branch": run.branch,
                "path": f".github/workflows/{workflow}",
                "created_at": f"{run.created_at:%Y-%m-%dT%H:%M:%SZ}",
                "html_url": f"https://github.com/{self.repository}/actions/runs/{run.id}",
            }
            for run in reversed(self.runs)
            if run.workflow == workflow
            and query.get("event", run.event) == run.event
            and query.get("branch", run.branch) == run.branch
            and created(run.created_at.replace(microsecond=0))
        ]
        return web.json_response({"total_count": len(runs), "workflow_runs": runs})


def _created_filter(value: str | None) -> Any:
    """GitHub's `created` search qualifier: >=, >, <=, <, a..b or a date."""
    if not value:
        return lambda moment: True

    def at(text: str) -> datetime:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    for sign, test in ((">=", "__ge__"), ("<=", "__le__"), (">", "__gt__"), ("<", "__lt__")):
        if value.startswith(sign):
            edge = at(value.removeprefix(sign))
            return lambda moment: getattr(moment, test)(edge)
    if ".." in value:
        low, high = (at(part) for part in value.split("..", 1))
        return lambda moment: low <= moment <= high
    day = at(value)
    return lambda moment: day <= moment < day + timedelta(days=1)


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"message": message, "documentation_url": DOCS, "status": str(status)}, status=status
    )
