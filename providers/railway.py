"""Railway provider: roll a service back to an earlier deployment via the GraphQL API.

Railway's GraphQL calls are made by `providers/railway_client.py`; what a deployment is and
which one serves, came before or is named is `providers/railway_deployments.py`.

What Railway documents, and this module relies on: ``deploymentRollback(id: String!):
Boolean!`` starts a new deployment from that deployment's image and custom variables; it
does not say which deployment it created.

Choices where the docs are silent, written down here: the new deployment is the newest one
whose id was not in the list read just before the mutation: comparing ids needs no
agreement between our clock and Railway's. When the mutation's answer is lost (a timeout, a
closed connection, a 5xx or a proxy's page), the same comparison tells whether Railway
started the rollback: if so it is followed, if not the error says so; it is never sent
again.

Versions are named by deployment id. A user may also name one by its commit's short sha
(7 characters) or its image tag when exactly one deployment Railway can roll back to carries
it; those aliases travel with the deployment's Version, so the engine accepts them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    NotFound,
    Outcome,
    Plan,
    Progress,
    ProviderError,
    RateLimited,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
    Version,
    say,
    sentence,
    state_or_unknown,
)
from providers.capabilities import FreezeRecord, Identity, PreflightReport
from providers.railway_client import RailwayClient
from providers.railway_deployments import (
    ENDED_BADLY,
    LIVE,
    ONCE_LIVE,
    Deployment,
    created_text,
    newer_in_flight,
    resolves_to,
    served,
    serving,
    unknown,
    versions,
)
from providers.railway_freeze import railway_freezer
from providers.railway_preflight import identity, preflight
from providers.railway_watch import Pacer
from providers.retry import watching

log = structlog.get_logger(__name__)


class RailwaySettings(BaseModel):
    """Settings of a `railway` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["railway"]
    endpoint: str = Field(
        default="https://backboard.railway.com/graphql/v2", description="GraphQL endpoint."
    )
    token_env: str = Field(default="RAILWAY_TOKEN", description="Variable holding the token.")
    token_kind: Literal["project", "account"] = Field(
        default="project",
        description="project: Project-Access-Token header; account: Authorization bearer.",
    )
    project_id: str = Field(description="Railway project id.")
    service_id: str = Field(description="Railway service id.")
    environment_id: str = Field(description="Railway environment id.")
    poll_interval_seconds: float = Field(default=3, gt=0, description="Deployment status pace.")
    deploy_timeout_seconds: float = Field(
        default=600, gt=0, description="How long the new deployment may take to succeed."
    )
    request_timeout_seconds: float = Field(
        default=10, gt=0, description="Deadline of one GraphQL request."
    )
    history: int = Field(
        default=20, ge=2, le=100, description="How many recent deployments are read."
    )
    progress_interval_seconds: float = Field(
        default=5, ge=0, description="Least time between two progress lines while watching."
    )

    def secret_variables(self) -> dict[str, str]:
        """Name the variable that holds the token."""
        return {"token_env": self.token_env}


class RailwayProvider:
    """Roll a Railway service back to an earlier deployment and wait until it serves."""

    def __init__(self, settings: RailwaySettings) -> None:
        self._settings = settings
        self._client = RailwayClient(settings)
        self._freezer = railway_freezer(self._client, settings)

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the id of the deployment Railway serves now."""
        deployments = await self._client.deployments()
        current = serving(deployments)
        if current is None:
            raise NotFound(self._nothing_serves(deployments))
        return current.id

    async def list_versions(self) -> list[Version]:
        """Return the service's deployments newest first, with their unambiguous aliases."""
        return versions(await self._client.deployments())

    async def plan(self, target: str) -> Plan:
        """Describe the rollback call and the wait, changing nothing."""
        deployments = await self._client.deployments()
        current = serving(deployments)
        chosen = self._candidate(target, deployments, current)
        created = created_text(chosen)
        steps = [
            f"Call deploymentRollback({chosen.id}) ({created}, {chosen.origin()}), then wait up "
            f"to {self._settings.deploy_timeout_seconds:g} s for the new deployment to reach "
            "SUCCESS."
        ]
        warnings = [
            "Railway restores the deployment's image and its custom variables as they were "
            "then: variables changed since are reverted too."
        ]
        if chosen.status not in ONCE_LIVE:
            warnings.append(f"Deployment {chosen.id} ended {chosen.status}; it may not run.")
        if current is not None and chosen.origin() == current.origin():
            warnings.append(
                f"It runs what Railway serves now ({current.origin()}); only the variables "
                "would change."
            )
        warnings += [
            f"Deployment {d.id} ({d.status}, {created_text(d)}) is newer than the one running; "
            "if it finishes it replaces the rollback."
            for d in newer_in_flight(deployments, current)
        ]
        return Plan(steps=steps, warnings=warnings)

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Call deploymentRollback once, then follow the new deployment until it serves."""
        started = time.monotonic()
        deployments = await self._client.deployments()
        chosen = self._candidate(target, deployments, serving(deployments))
        known = {d.id for d in deployments}
        await say(progress, f"Asking Railway to roll back to {chosen.describe()}…")
        await self._send_rollback(chosen, known)
        await say(progress, "Railway accepted the rollback; waiting for its new deployment…")
        new = await self._follow_new_deployment(known, chosen, progress)
        log.info(
            "railway.rollback",
            target=chosen.id,
            deployment=new.id,
            seconds=round(time.monotonic() - started, 2),
        )
        notes = [f"Its URL: https://{new.static_url}"] if new.static_url else []
        return Outcome(
            summary=f"Railway serves deployment {new.id} ({new.status}), a rollback to "
            f"deployment {chosen.id} ({chosen.origin()}).",
            notes=notes,
            running=served(new),
        )

    async def describe_state(self) -> str:
        """Say which deployment Railway serves now, asked from Railway."""
        deployments = await self._client.deployments()
        current = serving(deployments)
        text = (
            f"Railway serves {current.describe()}" if current else self._nothing_serves(deployments)
        )
        pending = "; ".join(
            f"deployment {d.id} is {d.status}" for d in newer_in_flight(deployments, current)
        )
        return f"{text}; {pending}" if pending else text

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    # -- Preflight and Describe -------------------------------------------------------------

    async def preflight(self, target: str) -> PreflightReport:
        """Check that Railway can roll back to `target` and say what changes, changing nothing."""
        return await preflight(self._client, self._settings, target)

    async def identity_now(self) -> Identity:
        """Return exactly which deployment Railway serves now, asked from Railway."""
        deployments = await self._client.deployments()
        current = serving(deployments)
        if current is None:
            raise NotFound(self._nothing_serves(deployments))
        return identity(current)

    # -- Freeze -----------------------------------------------------------------------------

    async def freeze(self, bad: str, good: str) -> FreezeRecord:
        """Turn the service's automatic deployments off, so a push cannot bring `bad` back."""
        return await self._freezer.freeze(bad)

    async def unfreeze(self, record: FreezeRecord) -> str:
        """Turn automatic deployments back on if the freeze turned them off."""
        return await self._freezer.unfreeze(record)

    # -- rolling back ----------------------------------------------------------------------

    async def _send_rollback(self, chosen: Deployment, known: set[str]) -> None:
        """Call deploymentRollback exactly once: a retry could roll back twice."""
        what = f"Railway deploymentRollback({chosen.id})"
        try:
            data = await self._client.deployment_rollback(chosen.id, what)
        except RateLimited as exc:
            raise RateLimited(
                f"{sentence(exc.message)} Nothing was changed.",
                retry_after=exc.retry_after,
                target_state=await self._state_or_unknown(),
            ) from exc
        except (Transient, TimedOut) as exc:
            if await self._started_anyway(chosen, known, exc):
                return
            raise
        except ProviderError as exc:
            raise type(exc)(
                f"{sentence(exc.message)} Nothing was changed.",
                target_state=await self._state_or_unknown(),
            ) from exc
        if data.get("deploymentRollback") is not True:
            raise Refused(
                f"{what}: Railway answered false; it did not roll back.",
                target_state=await self._state_or_unknown(),
            )

    async def _started_anyway(
        self, chosen: Deployment, known: set[str], error: ProviderError
    ) -> bool:
        """After a lost answer, ask Railway whether the rollback started; never resend it."""
        try:
            fresh = [d for d in await self._client.deployments() if d.id not in known]
        except ProviderError as exc:
            raise type(error)(
                f"{sentence(error.message)} It was sent once and not sent again (a retry could "
                f"roll back twice); whether Railway started it is unknown ({exc.message}): "
                "check the service's deployments in Railway before retrying.",
                target_state=f"unknown (Railway could not be asked: {exc.message})",
            ) from error
        if any(d.origin() == chosen.origin() for d in fresh):
            log.warning("railway.rollback_answer_lost_but_started", error=error.message)
            return True
        raise type(error)(
            f"{sentence(error.message)} Railway shows no new deployment of {chosen.origin()}: "
            "the rollback did not start, and it was not sent again (a retry could roll back "
            "twice).",
            target_state=await self._state_or_unknown(),
        ) from error

    async def _follow_new_deployment(
        self, known: set[str], chosen: Deployment, progress: Progress
    ) -> Deployment:
        """Poll until the deployment the rollback created serves, fails, or time runs out."""
        settings = self._settings
        pacer = Pacer(progress, settings.progress_interval_seconds)
        new: Deployment | None = None

        async def check() -> Deployment | None:
            nonlocal new
            try:
                listed = await self._client.deployments(retry=False)
            except (Transient, TimedOut):
                raise
            except ProviderError as exc:
                raise type(exc)(
                    "Railway accepted the rollback, but its progress could not be read: "
                    f"{sentence(exc.message)} It may still finish.",
                    target_state=await self._state_or_unknown(),
                ) from exc
            fresh = [d for d in listed if d.id not in known]
            if not fresh:
                return None
            new = fresh[0]
            ended = new.status in LIVE or new.status in ENDED_BADLY
            await pacer.report(_status_line(new), final=ended)
            if new.status in LIVE:
                return new
            if new.status in ENDED_BADLY:
                raise RollbackFailed(
                    f"Railway's new deployment {new.id} (the rollback to deployment "
                    f"{chosen.id}) ended {new.status}.",
                    target_state=await self._state_or_unknown(),
                )
            await pacer.tick()
            return None

        async def trouble(error: ProviderError) -> None:
            await pacer.report(f"{error.message}; still waiting.")

        async def late() -> ProviderError:
            return TimedOut(
                _timeout_text(new, settings.deploy_timeout_seconds),
                target_state=await self._state_or_unknown(),
            )

        return await watching(
            check,
            deadline_seconds=settings.deploy_timeout_seconds,
            interval=settings.poll_interval_seconds,
            trouble=trouble,
            late=late,
        )

    # -- helpers ----------------------------------------------------------------------------

    def _candidate(
        self, target: str, deployments: Sequence[Deployment], current: Deployment | None
    ) -> Deployment:
        """Return the deployment `target` names, refusing one Railway cannot roll back to."""
        chosen = resolves_to(target, deployments, current)
        if chosen is None:
            raise unknown(target, deployments, self._settings.service_id)
        if current is not None and chosen.id == current.id:
            raise Refused(f"`{target}` is {chosen.describe()}, which Railway serves now.")
        if not chosen.can_rollback:
            raise Refused(
                f"Railway does not allow rolling back to {chosen.describe()}: its canRollback is "
                "false (older than the plan's retention, or it never built)."
            )
        return chosen

    def _nothing_serves(self, deployments: Sequence[Deployment]) -> str:
        tail = f"; the newest is {deployments[0].describe()}" if deployments else ""
        return (
            f"Railway serves no deployment of service {self._settings.service_id} in environment "
            f"{self._settings.environment_id} (none is SUCCESS){tail}"
        )

    async def _state_or_unknown(self) -> str:
        """Describe the state for an error message without raising a second error."""
        return await state_or_unknown(self.describe_state)


def _status_line(deployment: Deployment) -> str:
    if deployment.status == "NEEDS_APPROVAL":
        return (
            f"New deployment {deployment.id} waits for someone to approve it in the Railway "
            "dashboard."
        )
    return f"New deployment {deployment.id}: {deployment.status}."


def _timeout_text(new: Deployment | None, seconds: float) -> str:
    if new is None:
        return f"No new Railway deployment appeared within {seconds:g} s of deploymentRollback."
    return f"Railway's new deployment {new.id} is still {new.status} after {seconds:g} s."
