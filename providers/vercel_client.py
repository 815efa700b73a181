"""Vercel's REST API as the vercel provider calls it: reads retried, a mutation sent once.

Every request carries the token (read from its variable on first use) and the team scope;
an error answer becomes a provider error with Vercel's own message, never the token.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import httpx
import structlog

from providers.base import (
    AuthRejected,
    NotFound,
    Progress,
    ProviderError,
    RateLimited,
    TimedOut,
    Transient,
    redact,
    say,
    state_or_unknown,
)
from providers.http import LazyClient, error_for, send
from providers.retry import retrying, watching
from providers.vercel_api import (
    ACCEPTED,
    DEPLOYMENTS_PATH,
    PROJECT_PATH,
    ROLLING_PATH,
    Deployment,
    Json,
    RollingRelease,
    Snapshot,
    error_body,
    json_of,
    names_of,
    production_of,
)

if TYPE_CHECKING:
    from providers.vercel import VercelSettings

log = structlog.get_logger(__name__)

T = TypeVar("T")


class VercelClient:
    """Read a Vercel project, send a mutation once and wait for Vercel, under one deadline."""

    def __init__(self, settings: VercelSettings) -> None:
        self._settings = settings
        self._http = LazyClient(settings.request_timeout_seconds)
        self._token: str | None = None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    # -- reading ----------------------------------------------------------------------------

    async def snapshot(self, *, rolling: bool = True) -> Snapshot:
        """Read the project, its READY production deployments and, if asked, its rolling release."""
        project = await self.project()
        listed = await self._read(
            DEPLOYMENTS_PATH,
            f"listing the production deployments of project `{self._settings.project}`",
            {
                "projectId": project["id"],
                "target": "production",
                "state": "READY",
                "limit": self._settings.history,
            },
        )
        key = self._settings.version_meta_key
        deployments = [
            Deployment.parse(raw, key)
            for raw in listed.get("deployments") or []
            # The filters are the API's; checked again so a loose answer cannot mislead us.
            if raw.get("target") == "production"
            and (raw.get("readyState") or raw.get("state")) == "READY"
        ]
        production = production_of(project, key)
        # Production may serve a deployment older than the page listed: it still counts.
        if production is not None and all(d.uid != production.uid for d in deployments):
            deployments.append(production)
        deployments.sort(key=lambda d: d.created_ms, reverse=True)
        return Snapshot(
            project_id=str(project["id"]),
            project_name=str(project.get("name") or self._settings.project),
            production=production,
            job=project.get("lastAliasRequest"),
            deployments=deployments,
            names=names_of(deployments),
            rolling=await self.rolling(str(project["id"])) if rolling else None,
        )

    async def recent(self, project_id: str) -> list[Deployment]:
        """Read the project's latest deployments of any state and target, newest first."""
        listed = await self._read(
            DEPLOYMENTS_PATH,
            f"listing the deployments of project `{self._settings.project}`",
            {"projectId": project_id, "limit": self._settings.history},
        )
        key = self._settings.version_meta_key
        found = [Deployment.parse(raw, key) for raw in listed.get("deployments") or []]
        return sorted(found, key=lambda d: d.created_ms, reverse=True)

    async def snapshot_or_none(self) -> Snapshot | None:
        """Read a snapshot, or None when Vercel cannot be read."""
        try:
            return await self.snapshot()
        except ProviderError:
            return None

    async def describe_state(self) -> str:
        """Say what production serves now, and any job or rollout running, asked from Vercel."""
        return (await self.snapshot()).describe()

    async def state_or_unknown(self) -> str:
        """Describe the state for an error message without raising a second error."""
        return await state_or_unknown(self.describe_state)

    async def project(self, *, retry: bool = True) -> Json:
        """Read the project with its last alias request."""
        project = self._settings.project
        return await self._read(
            PROJECT_PATH.format(project=project),
            f"reading project `{project}`",
            {"rollbackInfo": "true"},
            retry=retry,
        )

    async def rolling(self, project_id: str, *, retry: bool = True) -> RollingRelease | None:
        """Read the project's ACTIVE rolling release, if any."""
        try:
            body = await self._read(
                ROLLING_PATH.format(project=project_id),
                "reading the project's rolling release",
                {},
                retry=retry,
            )
        except NotFound:
            # Chosen: a team without Rolling Releases (a Hobby plan) has no release to read.
            return None
        return RollingRelease.parse(body)

    async def _read(self, path: str, what: str, params: Json, *, retry: bool = True) -> Json:
        """GET a JSON document, retrying rate limits, timeouts and transient failures."""

        async def once() -> Json:
            response = await self._send("GET", path, what, params)
            if response.status_code != 200:
                raise self._error(response, what)
            return json_of(response, what)

        return await retrying(once, timeouts=True) if retry else await once()

    # -- changing and waiting ---------------------------------------------------------------

    async def mutate(
        self,
        path: str,
        what: str,
        params: Json,
        body: Json,
        landed: Callable[[], Awaitable[bool]],
        status_command: str,
    ) -> None:
        """POST a mutation once; when its answer is lost, ask Vercel whether it landed."""
        error: ProviderError
        try:
            response = await self._send("POST", path, what, params, json=body)
        except (TimedOut, Transient) as exc:
            error = exc
        else:
            if response.status_code in ACCEPTED:
                return
            error = self._error(response, what)
        if isinstance(error, TimedOut | Transient) and not isinstance(error, RateLimited):
            # An unanswered or failed request may still have reached Vercel: look, never resend.
            if await landed():
                log.warning("vercel.request_failed_but_applied", error=error.message)
                return
            raise type(error)(
                f"{error.message}. It may still have reached Vercel and was not sent again: "
                f"check `vercel {status_command} {self._settings.project}` before retrying.",
                target_state=await self.state_or_unknown(),
            ) from error
        error.target_state = await self.state_or_unknown()
        raise error

    async def update_project(self, body: Json, what: str) -> None:
        """PATCH the project's settings once (the caller decides about resending)."""
        path = PROJECT_PATH.format(project=self._settings.project)
        response = await self._send("PATCH", path, what, {}, json=body)
        if response.status_code != 200:
            raise self._error(response, what)

    async def watch(
        self, check: Callable[[], Awaitable[T | None]], late: Callable[[], str], progress: Progress
    ) -> T:
        """Poll `check` until it answers or the rollback's deadline passes."""

        async def trouble(error: ProviderError) -> None:
            await say(progress, f"{error.message}; still waiting.")

        async def timed_out() -> ProviderError:
            return TimedOut(late(), target_state=await self.state_or_unknown())

        return await watching(
            check,
            deadline_seconds=self._settings.promote_timeout_seconds,
            interval=self._settings.poll_interval_seconds,
            trouble=trouble,
            late=timed_out,
        )

    # -- HTTP -------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        """Return the one HTTP client, made with the token read on first use."""
        if self._token is None:
            variable = self._settings.token_env
            token = os.environ.get(variable, "").strip()
            if not token:
                raise AuthRejected(f"Vercel: environment variable {variable} holds no token.")
            self._token = token
        return self._http.get(
            base_url=self._settings.api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
        )

    async def _send(
        self, method: str, path: str, what: str, params: Json, json: Json | None = None
    ) -> httpx.Response:
        """Send one request with the team scope; transport failures become provider errors."""
        query = {**params, **({"teamId": self._settings.team_id} if self._settings.team_id else {})}
        return await send(
            self._client(), method, path, what=f"Vercel: {what}", params=query, json=json
        )

    def _error(self, response: httpx.Response, what: str) -> ProviderError:
        """Translate an error answer, with Vercel's own message, never the token."""
        code, message = error_body(response)
        detail = f"{message} ({code})" if message and code else message or code
        error = error_for(response, f"Vercel: {what}", self._scrub(detail), service="Vercel")
        if isinstance(error, AuthRejected):
            team = self._settings.team_id
            scope = f"team {team}" if team else "the project"
            error = AuthRejected(
                f"{error.message}. Check the token in {self._settings.token_env} "
                f"and its access to {scope}."
            )
        return error

    def _scrub(self, text: str) -> str:
        """Remove the token from text that came from elsewhere (Vercel may echo a request)."""
        return redact(text, self._token)
