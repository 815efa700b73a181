"""Freezing a git target: a failing ``rollbot/freeze`` commit status on the bad version's commit.

GitHub keeps a commit's statuses for good: one cannot be deleted or edited, and the newest
of a context is the one that counts (docs.github.com/rest/commits/statuses). The freeze
posts ``failure`` on the bad commit; the team's pipeline respects it when
``rollbot/freeze`` is a required status check or its deploy workflow checks it. Unfreezing
posts again what the context said before (or ``success`` "unfrozen" when it said nothing),
but only while the newest status is still the freeze's own: a later one is someone's
decision and is left alone. Every status write is sent once; when its answer is lost,
the statuses are read back to see whether it took.
"""

from __future__ import annotations

from typing import Any

import httpx

from providers.base import ProviderError, Refused
from providers.capabilities import FreezeRecord
from providers.git.github import GitHubApi, unanswered
from providers.git.model import SHORT_SHA, Tag
from providers.git.transport import Scrubber

CONTEXT = "rollbot/freeze"
UNFROZEN = "unfrozen"
NO_STATUS = ""  # what `previous_state` holds when the context had no status before
FORBIDDEN = 403


def frozen_text(version: str) -> str:
    """The description of the freeze's failing status."""
    return f"frozen: {version} was rolled back"


class Freezing:
    """Set and clear the freeze's commit status on GitHub."""

    def __init__(self, github: GitHubApi, scrub: Scrubber) -> None:
        self._github = github
        self._scrub = scrub

    async def freeze(self, bad: Tag) -> FreezeRecord:
        """Post `failure` on the bad commit, unless the freeze's status is there already."""
        sha, description = bad.commit, frozen_text(bad.name)
        history = await self._history(sha)
        if history and _is(history[0], "failure", description):
            # Frozen already: what counted before is the newest status that is not a freeze.
            earlier = next((s for s in history if not _is(s, "failure", description)), None)
            return self._record(bad, history[0], earlier)
        body = {"state": "failure", "context": CONTEXT, "description": description}
        posted = await self._post(sha, body, history[0] if history else None)
        return self._record(bad, posted, history[0] if history else None)

    async def unfreeze(self, record: FreezeRecord) -> str:
        """Post back the status from before the freeze, unless someone has set one since."""
        saved = record.saved
        sha = saved["commit"]
        shown = f"{CONTEXT} on {sha[:SHORT_SHA]} ({saved['version']}) of {self._github.repository}"
        history = await self._history(sha)
        latest = history[0] if history else None
        if latest is None or str(latest.get("id")) != saved["frozen_status_id"]:
            now = "no status" if latest is None else _said(latest)
            raise Refused(
                f"{shown} changed since the freeze (it says {now} now); nothing restored over "
                "that change: set the status by hand if it should say something else."
            )
        if saved["previous_state"] == NO_STATUS:
            body = {"state": "success", "context": CONTEXT, "description": UNFROZEN}
            await self._post(sha, body, latest)
            return (
                f"Set {shown} to success “{UNFROZEN}”: it had no status before the freeze, "
                "and a GitHub commit status cannot be deleted."
            )
        body = {
            "state": saved["previous_state"],
            "context": CONTEXT,
            "description": saved["previous_description"],
        }
        if saved["previous_target_url"]:
            body["target_url"] = saved["previous_target_url"]
        await self._post(sha, body, latest)
        return (
            f"Put back {shown} as it was before the freeze: {_said(body)} (a GitHub commit "
            "status cannot be deleted, so the same status is posted again)."
        )

    # -- GitHub ------------------------------------------------------------------------------

    async def _history(self, sha: str) -> list[dict[str, Any]]:
        """The context's statuses on the commit, newest first (a read: retried)."""
        what = f"Reading the commit statuses of {sha[:SHORT_SHA]} in {self._github.repository}"
        response = await self._github.read(
            f"/commits/{sha}/statuses?per_page=100", what, allow=(FORBIDDEN,)
        )
        if response.status_code == FORBIDDEN:
            raise self._forbidden(response, what, "read")
        payload = response.json()
        statuses = payload if isinstance(payload, list) else []
        return [s for s in statuses if isinstance(s, dict) and s.get("context") == CONTEXT]

    async def _post(
        self, sha: str, body: dict[str, str], before: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Post one status, once; after a lost answer, read back whether it took."""
        what = (
            f"Setting {CONTEXT} to {body['state']} on {sha[:SHORT_SHA]} of "
            f"{self._github.repository}"
        )
        try:
            response = await self._github.write(f"/statuses/{sha}", body, what, allow=(FORBIDDEN,))
        except ProviderError as exc:
            if not unanswered(exc):
                raise
            landed = await self._landed(sha, body, before, exc)
            if landed is None:
                raise type(exc)(
                    f"{self._scrub(exc.message)} (sent once, not retried); GitHub's statuses "
                    f"show it did not take: {CONTEXT} still says "
                    f"{'nothing' if before is None else _said(before)}."
                ) from exc
            return landed
        if response.status_code == FORBIDDEN:
            raise self._forbidden(response, what, "write")
        posted = response.json()
        return posted if isinstance(posted, dict) else {}

    async def _landed(
        self, sha: str, body: dict[str, str], before: dict[str, Any] | None, exc: ProviderError
    ) -> dict[str, Any] | None:
        try:
            history = await self._history(sha)
        except ProviderError as again:
            raise type(exc)(
                f"{self._scrub(exc.message)} (sent once, not retried); whether it took is "
                f"unknown ({self._scrub(again.message)}): look at the commit's checks on GitHub."
            ) from exc
        latest = history[0] if history else None
        new = latest is not None and (before is None or latest.get("id") != before.get("id"))
        return (
            latest if new and latest and _is(latest, body["state"], body["description"]) else None
        )

    def _forbidden(self, response: httpx.Response, what: str, access: str) -> ProviderError:
        """Name the permission a token without access to commit statuses lacks."""
        said = self._github.error(response, what).message
        scope = "`repo:status` (or `repo`)" if access == "write" else "`repo`"
        return Refused(
            f"{said}. The token may not {access} commit statuses: a fine-grained token needs "
            f"the “Commit statuses: {access}” permission on {self._github.repository}, a "
            f"classic token the {scope} scope."
        )

    def _record(
        self, bad: Tag, frozen: dict[str, Any], earlier: dict[str, Any] | None
    ) -> FreezeRecord:
        sha = bad.commit
        return FreezeRecord(
            action=(
                f"commit status {CONTEXT} set to failure “{frozen_text(bad.name)}” on "
                f"{sha[:SHORT_SHA]} ({bad.name}) of {self._github.repository}"
            ),
            saved={
                "repository": self._github.repository,
                "version": bad.name,
                "commit": sha,
                "context": CONTEXT,
                "frozen_status_id": str(frozen.get("id", "")),
                "previous_state": NO_STATUS if earlier is None else str(earlier.get("state")),
                "previous_description": _text(earlier, "description"),
                "previous_target_url": _text(earlier, "target_url"),
            },
        )


def _is(status: dict[str, Any], state: str, description: str) -> bool:
    return status.get("state") == state and (status.get("description") or "") == description


def _text(status: dict[str, Any] | None, key: str) -> str:
    return "" if status is None else str(status.get(key) or "")


def _said(status: dict[str, Any]) -> str:
    return f"{status.get('state')} “{status.get('description') or ''}”"
