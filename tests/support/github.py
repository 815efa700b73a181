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
- ``GET /repos/{o}/{r}/rules/branches/{b}``: every active rule of every ruleset that
  applies, each with its ``ruleset_id``; ``GET /repos/{o}/{r}/rulesets/{id}`` tells
  ``current_user_can_bypass`` ("always", "pull_requests_only", "never").
- ``POST .../actions/workflows/{w}/dispatches``: 204; 404 for an unknown workflow; 422
  "Workflow does not have 'workflow_dispatch' trigger", "No ref found for: x" and
  "Unexpected inputs provided: [...]" as GitHub validates.
- ``GET .../actions/workflows/{w}/runs``: the runs dispatches started.
- Pushes (`guard_pushes` installs a pre-receive hook in the bare remote): a protected
  branch refuses with "GH006: Protected branch update failed" and the rule ("Required
  status check "ci" is expected.", "Changes must be made through a pull request."); a
  ruleset with "GH013: Repository rule violations found"; a token that may not write
  workflows refuses a change under ``.github/workflows/`` with "refusing to allow a
  Personal Access Token to create or update workflow `…` without `workflow` scope".
  Admins pass branch protection that does not include administrators, and a ruleset
  whose ``current_user_can_bypass`` is "always" lets the push through.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

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
    """A repository ruleset on one branch; `rules` are GitHub's rule objects."""

    id: int
    name: str
    branch: str
    rules: list[dict[str, Any]]
    bypass: str = "never"


def required_checks(*contexts: str) -> dict[str, Any]:
    """A ruleset rule that requires status checks."""
    checks = [{"context": c} for c in contexts]
    return {"type": "required_status_checks", "parameters": {"required_status_checks": checks}}


PULL_REQUEST = {"type": "pull_request", "parameters": {"required_approving_review_count": 1}}


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
        self.requests: list[tuple[str, str]] = []
        app = web.Application(middlewares=[self._gate])
        repo = "/repos/{owner}/{repo}"
        app.router.add_get(repo + "/branches/{branch:.+}/protection", self._protection)
        app.router.add_get(repo + "/branches/{branch:.+}", self._branch)
        app.router.add_get(repo + "/rules/branches/{branch:.+}", self._rules)
        app.router.add_get(repo + "/rulesets/{id:\\d+}", self._ruleset)
        app.router.add_post(repo + "/actions/workflows/{workflow}/dispatches", self._dispatch)
        app.router.add_get(repo + "/actions/workflows/{workflow}/runs", self._runs)
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
        branch = request.match_info["branch"]
        rules = [
            {
                **rule,
                "ruleset_source_type": "Repository",
                "ruleset_source": self.repository,
                "ruleset_id": ruleset.id,
            }
            for ruleset in self.rulesets
            if ruleset.branch == branch
            for rule in ruleset.rules
        ]
        return web.json_response(rules)

    async def _ruleset(self, request: web.Request) -> web.Response:
        wanted = int(request.match_info["id"])
        found = next((r for r in self.rulesets if r.id == wanted), None)
        if found is None:
            return _error(404, "Not Found")
        return web.json_response(
            {
                "id": found.id,
                "name": found.name,
                "target": "branch",
                "enforcement": "active",
                "conditions": {"ref_name": {"include": [f"refs/heads/{found.branch}"]}},
                "rules": found.rules,
                "current_user_can_bypass": found.bypass,
            }
        )

    # -- workflows --------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Problems parsing JSON")
        self.dispatches.append(
            Dispatch(request.path, request.headers.get("Authorization", ""), body)
        )
        dispatchable = self.workflows.get(request.match_info["workflow"])
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
        return web.Response(status=204)

    async def _runs(self, request: web.Request) -> web.Response:
        workflow = request.match_info["workflow"]
        runs = [
            {"id": n, "event": "workflow_dispatch", "status": "queued", "path": d.path}
            for n, d in enumerate(self.dispatches, 1)
            if f"/workflows/{workflow}/" in d.path and self.workflows.get(workflow)
        ]
        return web.json_response({"total_count": len(runs), "workflow_runs": runs[::-1]})


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"message": message, "documentation_url": DOCS, "status": str(status)}, status=status
    )


HOOK = r"""
import json, subprocess, sys

CONFIG = json.loads(__CONFIG__)
ZERO = "0" * 40
status = 0
for line in sys.stdin.read().splitlines():
    old, new, ref = line.split()
    said = []
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    classic = CONFIG["protections"].get(branch) if branch else None
    if classic and not (CONFIG["admin"] and not classic["enforce_admins"]):
        rules = []
        checks = classic["checks"]
        if classic["reviews"]:
            rules.append("Changes must be made through a pull request.")
        if len(checks) == 1:
            rules.append(f'Required status check "{checks[0]}" is expected.')
        elif checks:
            rules.append(f"{len(checks)} of {len(checks)} required status checks are expected.")
        if rules:
            said += [f"error: GH006: Protected branch update failed for {ref}."]
            said += ["error: " + " ".join(rules)]
    for ruleset in CONFIG["rulesets"]:
        if ruleset["branch"] != branch or ruleset["bypass"] == "always":
            continue
        lines = []
        for rule in ruleset["rules"]:
            if rule["type"] == "pull_request":
                lines.append("- Changes must be made through a pull request.")
            if rule["type"] == "required_status_checks":
                for check in rule["parameters"]["required_status_checks"]:
                    lines.append(f'- Required status check "{check["context"]}" is expected.')
        if lines:
            said += [f"error: GH013: Repository rule violations found for {ref}."]
            where = f"https://github.com/{CONFIG['repository']}/rules?ref={ref.replace('/', '%2F')}"
            said += [f"Review all repository rules at {where}", ""]
            said += [part for l in lines for part in (l, "")]
    if not CONFIG["workflow_write"] and old != ZERO and new != ZERO:
        changed = subprocess.run(
            ["git", "diff", "--name-only", old, new, "--", ".github/workflows/"],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        if changed:
            said.append(
                f"refusing to allow a Personal Access Token to create or update workflow "
                f"`{changed[0]}` without `workflow` scope"
            )
    if said:
        print("\n".join(said), file=sys.stderr)
        status = 1
sys.exit(status)
"""


def guard_pushes(bare: Path, github: FakeGitHub, *, workflow_write: bool | None = None) -> None:
    """Make the bare remote refuse pushes as GitHub would for `github`'s token and rules.

    `workflow_write` says whether the token may write workflows; by default, whether its
    classic scopes include `workflow` (a fine-grained token must be told).
    """
    if workflow_write is None:
        workflow_write = github.scopes is not None and "workflow" in github.scopes
    config = {
        "repository": github.repository,
        "admin": github.admin,
        "protections": {b: vars(p) for b, p in github.protections.items()},
        "rulesets": [vars(r) for r in github.rulesets],
        "workflow_write": workflow_write,
    }
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(f"#!{sys.executable}\n" + HOOK.replace("__CONFIG__", repr(json.dumps(config))))
    hook.chmod(0o755)
