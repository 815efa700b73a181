"""GitHub's REST API, as far as a git rollback needs it: starting the deploy workflow."""

from __future__ import annotations

import httpx

from providers.base import Refused
from providers.git.settings import GitSettings
from providers.git.transport import Scrubber
from providers.http import error_for, new_client, send, token_from

API_VERSION = "2022-11-28"


class GitHubApi:
    """One lazily made HTTP client to GitHub, with the token read when first needed."""

    def __init__(self, settings: GitSettings, scrub: Scrubber) -> None:
        self._settings = settings
        self._scrub = scrub
        self._token = token_from(settings.token_env)
        self._client: httpx.AsyncClient | None = None

    async def dispatch_workflow(self, version: str) -> None:
        """Start the workflow once with input `version`; never retried (it starts a deploy)."""
        settings = self._settings
        what = f"Starting workflow {settings.workflow} of {settings.github_repository}"
        url = (
            f"{self._api}/repos/{settings.github_repository}/actions/workflows/"
            f"{settings.workflow}/dispatches"
        )
        body = {"ref": settings.workflow_on, "inputs": {"version": version}}
        response = await send(
            self._http(), "POST", url, what=what, json=body, headers=self._headers()
        )
        if response.status_code not in (httpx.codes.NO_CONTENT, httpx.codes.OK):
            raise error_for(response, what, self._scrub(api_message(response)))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    @property
    def _api(self) -> str:
        return self._settings.api_url.rstrip("/")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = new_client(self._settings.request_timeout_seconds)
        return self._client

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


def api_message(response: httpx.Response) -> str:
    """Return the `message` of a GitHub error body, or the start of a body that is not JSON."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200]
    return str(payload.get("message", ""))[:200] if isinstance(payload, dict) else ""
