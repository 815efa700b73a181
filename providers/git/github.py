"""GitHub's REST API, as far as a git rollback needs it: push rules and the deploy workflow.

GitHub answers a spent rate limit with 403 (``x-ratelimit-remaining: 0``, or "secondary
rate limit" in the message): that is a RateLimited, never a rejected token. A classic
token's scopes come in ``X-OAuth-Scopes``; fine-grained and app tokens send none.
A dispatch's answer carries no run id: a run it started is found by listing the
workflow's runs (``event=workflow_dispatch``, ``branch``, ``created>=``).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from providers.base import ProviderError, RateLimited, Refused, TimedOut, Transient
from providers.git.settings import GitSettings
from providers.git.transport import Scrubber
from providers.http import LazyClient, error_for, retry_after, send, token_from
from providers.retry import retrying

API_VERSION = "2022-11-28"
# Runs are dated by GitHub's clock: look a little before the send time, so a clock of
# ours that runs ahead never hides the run a dispatch started.
CLOCK_SKEW = timedelta(seconds=60)


class GitHubApi:
    """One lazily made HTTP client to GitHub, with the token read when first needed."""

    def __init__(self, settings: GitSettings, scrub: Scrubber) -> None:
        self._settings = settings
        self._scrub = scrub
        self._token = token_from(settings.token_env)
        self._client = LazyClient(settings.request_timeout_seconds)
        self.repository = settings.github_repository or ""
        # The classic token's scopes, once an answer said them; None: not a classic token.
        self.scopes: frozenset[str] | None = None

    async def read(self, path: str, what: str, *, allow: tuple[int, ...] = ()) -> httpx.Response:
        """GET a path of the repository (a read: retried, timeouts included)."""
        url = f"{self._api}/repos/{self.repository}{path}"

        async def once() -> httpx.Response:
            try:
                response = await send(self._http(), "GET", url, what=what, headers=self._headers())
            except TimedOut as exc:
                raise Transient(exc.message) from exc  # a read that timed out is safe to ask again
            if response.is_success:
                self._note_scopes(response)
            if response.is_success or (response.status_code in allow and not _rate_limit(response)):
                return response
            raise self.error(response, what)

        return await retrying(once, deadline_seconds=3 * self._settings.request_timeout_seconds + 5)

    async def write(
        self, path: str, body: dict[str, Any], what: str, *, allow: tuple[int, ...] = ()
    ) -> httpx.Response:
        """POST to a path of the repository once; never retried (it changes something)."""
        url = f"{self._api}/repos/{self.repository}{path}"
        response = await send(
            self._http(), "POST", url, what=what, json=body, headers=self._headers()
        )
        if response.is_success or (response.status_code in allow and not _rate_limit(response)):
            return response
        raise self.error(response, what)

    async def dispatch_workflow(self, version: str) -> None:
        """Start the workflow once with input `version`; never retried (it starts a deploy)."""
        settings = self._settings
        what = f"Starting workflow {settings.workflow} of {self.repository}"
        url = (
            f"{self._api}/repos/{self.repository}/actions/workflows/{settings.workflow}/dispatches"
        )
        body = {"ref": settings.workflow_on, "inputs": {"version": version}}
        response = await send(
            self._http(), "POST", url, what=what, json=body, headers=self._headers()
        )
        if response.status_code not in (httpx.codes.NO_CONTENT, httpx.codes.OK):
            raise self.error(response, what)

    async def dispatched_runs(self, since: datetime) -> list[dict[str, Any]]:
        """Return the workflow's dispatched runs on its ref created since `since`, newest first."""
        settings = self._settings
        query = urlencode(
            {
                "event": "workflow_dispatch",
                "branch": settings.workflow_on,
                "created": f">={since - CLOCK_SKEW:%Y-%m-%dT%H:%M:%SZ}",
                "per_page": "10",
            }
        )
        what = f"Listing the runs of workflow {settings.workflow} of {self.repository}"
        response = await self.read(f"/actions/workflows/{settings.workflow}/runs?{query}", what)
        payload = response.json()
        runs = payload.get("workflow_runs") if isinstance(payload, dict) else None
        return [run for run in runs or [] if isinstance(run, dict)]

    def workflow_page(self) -> str:
        """The workflow's page on GitHub, where it can be started by hand."""
        # api.github.com serves github.com; GitHub Enterprise Server serves its API at /api/v3.
        web = self._api.replace("://api.github.com", "://github.com").removesuffix("/api/v3")
        return f"{web}/{self.repository}/actions/workflows/{self._settings.workflow}"

    def error(self, response: httpx.Response, what: str) -> ProviderError:
        """Translate GitHub's answer, telling a spent rate limit from a rejected token."""
        if _rate_limit(response):
            wait = _rate_limit_wait(response)
            hint = f"; it resets in {wait:.0f} s" if wait is not None else ""
            return RateLimited(
                f"{what}: GitHub's API rate limit for this token is spent (HTTP "
                f"{response.status_code}){hint}",
                retry_after=wait,
            )
        return error_for(response, what, self._scrub(api_message(response)))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    @property
    def _api(self) -> str:
        return self._settings.api_url.rstrip("/")

    def _note_scopes(self, response: httpx.Response) -> None:
        scopes = response.headers.get("X-OAuth-Scopes")
        self.scopes = (
            None if scopes is None else frozenset(s.strip() for s in scopes.split(",") if s.strip())
        )

    def _http(self) -> httpx.AsyncClient:
        return self._client.get()

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            self._token = token_from(self._settings.token_env)
            if self._token is not None:
                self._scrub.add(self._token.get_secret_value())
        if self._token is None:
            raise Refused(f"{self._settings.token_env} is not set: rollbot has no GitHub token.")
        return {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }


def unanswered(exc: ProviderError) -> bool:
    """Return True when a write may have been applied though its answer never came."""
    return isinstance(exc, TimedOut) or (
        isinstance(exc, Transient) and not isinstance(exc, RateLimited)
    )


def _rate_limit(response: httpx.Response) -> bool:
    if response.status_code not in (403, 429):
        return False
    if response.headers.get("x-ratelimit-remaining") == "0":
        return True
    return "rate limit" in api_message(response).lower()


def _rate_limit_wait(response: httpx.Response) -> float | None:
    wait = retry_after(response)
    if wait is not None:
        return wait
    reset = response.headers.get("x-ratelimit-reset", "")
    return max(0.0, float(reset) - time.time()) if reset.isdigit() else None


def api_message(response: httpx.Response) -> str:
    """Return the `message` of a GitHub error body; never an HTML page a proxy sent."""
    if "html" in response.headers.get("Content-Type", "").lower():
        return "an error page from a proxy or CDN in front of GitHub, not GitHub's API"
    try:
        payload: Any = response.json()
    except ValueError:
        return response.text[:200]
    return str(payload.get("message", ""))[:200] if isinstance(payload, dict) else ""
