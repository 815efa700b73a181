"""Commit statuses on the fake GitHub, as docs.github.com/rest/commits/statuses documents them.

- ``POST /repos/{o}/{r}/statuses/{sha}``: ``state`` is one of error, failure, pending,
  success (else 422 "Validation Failed"); ``context`` defaults to "default"; the answer is
  201 with the status (``id``, ``state``, ``description``, ``target_url``, ``context``,
  ``created_at``). At most 1000 statuses per sha and context (then 422). A status cannot
  be deleted or edited: a new one for the same context supersedes it.
- ``GET /repos/{o}/{r}/commits/{ref}/statuses``: every status of the commit in reverse
  chronological order (the first is the latest), ``per_page`` (default 30, at most 100)
  and ``page``.
- A fine-grained token without "Commit statuses: write" (or a classic one without the
  ``repo:status`` scope) is answered 403 "Resource not accessible by personal access
  token" on the POST; without "Commit statuses: read", on the GET too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

STATES = {"error", "failure", "pending", "success"}
MAX_PER_CONTEXT = 1000
NOT_ACCESSIBLE = "Resource not accessible by personal access token"


@dataclass
class CommitStatuses:
    """The statuses of every commit, and what the token may do with them."""

    # "write", "read" or "none": the token's "Commit statuses" permission.
    permission: str = "write"
    by_sha: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    posts: list[dict[str, Any]] = field(default_factory=list)
    _next_id: int = 1

    def register(self, router: web.UrlDispatcher, repo: str) -> None:
        """Add the two routes under `repo` ("/repos/{owner}/{repo}")."""
        router.add_post(repo + "/statuses/{sha}", self._create)
        router.add_get(repo + "/commits/{ref}/statuses", self._list)

    def add(self, sha: str, state: str, description: str, context: str, url: str = "") -> int:
        """Record one status as someone else would set it; return its id."""
        status = {
            "id": self._next_id,
            "state": state,
            "description": description,
            "target_url": url or None,
            "context": context,
            "created_at": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
        }
        self._next_id += 1
        self.by_sha.setdefault(sha, []).insert(0, status)
        return int(status["id"])

    def latest(self, sha: str, context: str) -> dict[str, Any] | None:
        """The status of `context` on `sha` that counts (the newest), if any."""
        return next((s for s in self.by_sha.get(sha, []) if s["context"] == context), None)

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Problems parsing JSON")
        self.posts.append(body)
        if self.permission != "write":
            return _error(403, NOT_ACCESSIBLE)
        state = body.get("state")
        if state not in STATES:
            return _error(422, "Validation Failed")
        sha, context = request.match_info["sha"], str(body.get("context") or "default")
        if sum(s["context"] == context for s in self.by_sha.get(sha, [])) >= MAX_PER_CONTEXT:
            return _error(422, "This SHA and context has reached the maximum number of statuses.")
        number = self.add(
            sha, state, str(body.get("description") or ""), context, body.get("target_url") or ""
        )
        return web.json_response(self.by_sha[sha][0] | {"id": number}, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        if self.permission == "none":
            return _error(403, NOT_ACCESSIBLE)
        per_page = min(int(request.query.get("per_page", "30")), 100)
        page = int(request.query.get("page", "1"))
        statuses = self.by_sha.get(request.match_info["ref"], [])
        return web.json_response(statuses[(page - 1) * per_page : page * per_page])


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {
            "message": message,
            "documentation_url": "https://docs.github.com/rest/commits/statuses",
            "status": str(status),
        },
        status=status,
    )
