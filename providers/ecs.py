"""AWS ECS provider: move a service back to an earlier task-definition revision.

Versions are the family's ACTIVE revisions, named by the image tag of the configured
container (`providers.ecs_catalog`). A bare revision number (`42`) is an alias of each
listed revision, and `plan` and `rollback` take any ACTIVE revision's number (`preflight`
any revision's: a deregistered one fails its check)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import structlog
from pydantic import Field

from providers.aws import AwsApi, AwsSettings
from providers.base import (
    Conflicting,
    NotFound,
    Outcome,
    Plan,
    Progress,
    ProviderError,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
    Version,
    state_or_unknown,
)
from providers.capabilities import Identity, PreflightReport
from providers.ecr_images import EcrImages
from providers.ecs_breaker import breaker_rollback
from providers.ecs_catalog import (
    Catalog,
    Json,
    Revision,
    parse_task_definition,
    previous_revision,
    version_names,
)
from providers.ecs_freeze import WatchOnlyFreeze
from providers.ecs_preflight import identity, preflight_report
from providers.ecs_status import (
    breaker_note,
    counts_text,
    deployment_completed,
    plan_warnings,
    primary_deployment,
    refuse_unsupported,
    state_text,
    task_counts,
    watched_deployment,
)

log = structlog.get_logger(__name__)


class EcsSettings(AwsSettings):
    """Settings of an `ecs` target."""

    provider: Literal["ecs"]
    cluster: str = Field(description="ECS cluster name or ARN.")
    service: str = Field(description="ECS service name.")
    family: str = Field(description="Task-definition family, e.g. pmcrm-backend.")
    container: str = Field(description="Container whose image tag names the version.")
    poll_interval_seconds: float = Field(default=5, gt=0, description="describe_services pace.")
    stable_timeout_seconds: float = Field(
        default=600, gt=0, description="How long the deployment may take to complete."
    )
    max_revisions: int = Field(
        default=20, ge=1, le=100, description="How many of the newest revisions are offered."
    )
    max_failed_tasks: int = Field(
        default=3,
        ge=0,
        description=(
            "Give up once the new deployment has this many consecutively failed tasks "
            "(0: wait for ECS's circuit breaker or the deadline instead)."
        ),
    )


class EcsProvider(WatchOnlyFreeze):
    """Roll an ECS service back by pointing it at an earlier task-definition revision."""

    def __init__(self, settings: EcsSettings) -> None:
        self._settings = settings
        self._aws = AwsApi("ecs", settings)
        self._ecr = EcrImages(settings)
        # A revision never changes its containers: each is described once.
        self._known: dict[str, Revision] = {}

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the version name of the revision the service is set to."""
        catalog = await self._catalog()
        return catalog.name(catalog.current.number)

    async def list_versions(self) -> list[Version]:
        """Return the newest revisions, newest first, current and the one before marked."""
        catalog = await self._catalog()
        previous = previous_revision(catalog)
        breaker = breaker_rollback(catalog.service)
        return [
            Version(
                name=catalog.name(r.number),
                created_at=r.registered_at,
                current=r.number == catalog.current.number,
                previous_stable=previous is not None and r.number == previous.number,
                detail=f"revision {r.ref}, image {r.image or 'unknown'}"
                + breaker_note(catalog, breaker, r),
                # `/rollback backend 42` means revision 42 of the family.
                aliases=(str(r.number),),
            )
            for r in catalog.revisions
        ]

    async def plan(self, target: str) -> Plan:
        """Describe the update of the service to the target revision, changing nothing."""
        catalog = await self._catalog()
        revision = await self._resolve(catalog, target)
        refuse_unsupported(catalog.service)
        self._refuse_fighting_ecs(catalog)
        settings = self._settings
        service = catalog.service
        desired = int(service.get("desiredCount") or 0)
        steps = [
            f"Call ecs:UpdateService on `{settings.service}` in cluster `{settings.cluster}` "
            f"with taskDefinition {catalog.described(revision)}; it is set to "
            f"{catalog.described(catalog.current)} now.",
            f"ECS replaces the {desired} task{_plural(desired)} in a rolling deployment.",
            f"Watch describe_services every {settings.poll_interval_seconds:g} s for up to "
            f"{settings.stable_timeout_seconds:g} s until the new PRIMARY deployment is "
            f"COMPLETED with {desired}/{desired} tasks running; stop on a FAILED rollout"
            + (
                f" or {settings.max_failed_tasks} consecutively failed tasks."
                if settings.max_failed_tasks
                else "."
            ),
        ]
        return Plan(steps=steps, warnings=plan_warnings(catalog, revision))

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Update the service to the target revision and wait until it is stable."""
        started = time.monotonic()
        catalog = await self._catalog()
        revision = await self._resolve(catalog, target)
        refuse_unsupported(catalog.service)
        self._refuse_fighting_ecs(catalog)
        deployment_id = await self._update_service(catalog, revision)
        await progress(
            f"ECS service `{self._settings.service}` set to {catalog.described(revision)}; "
            "waiting for the deployment to complete…"
        )
        service = await self._wait_stable(catalog, revision, deployment_id, progress)
        running = int(service.get("runningCount") or 0)
        log.info("ecs.rollback", target=revision.ref, seconds=round(time.monotonic() - started, 2))
        return Outcome(
            summary=(
                f"`{self._settings.service}` now runs {catalog.described(revision)}: "
                f"{running}/{service.get('desiredCount')} tasks running, deployment completed."
            )
        )

    async def describe_state(self) -> str:
        """Say which revision the service is set to and how its deployments stand."""
        catalog = await self._catalog()
        return state_text(catalog, catalog.service, self._settings)

    # -- Preflight and Describe -------------------------------------------------------------

    async def preflight(self, target: str) -> PreflightReport:
        """Check that the target revision can run and say what changes, changing nothing."""
        catalog = await self._catalog()
        # A deregistered revision named by its number is known: its check fails instead.
        revision = await self._resolve(catalog, target, any_status=True)
        report = preflight_report(catalog, revision)
        report.checks.append(await self._ecr.check(revision.definition))
        return report

    async def identity_now(self) -> Identity:
        """Return the task-definition ARN (with revision) the service is set to now."""
        catalog = await self._catalog()
        return identity(catalog, catalog.current)

    async def aclose(self) -> None:
        """Close the ECS and ECR clients."""
        await self._aws.aclose()
        await self._ecr.aclose()

    # -- reads ------------------------------------------------------------------------------

    async def _service(self) -> Json:
        """Describe the service; a missing or deleted one is NotFound."""
        settings = self._settings
        answer = await self._aws.read(
            f"describing ECS service `{settings.service}`",
            lambda c: c.describe_services(cluster=settings.cluster, services=[settings.service]),
        )
        services = answer.get("services") or []
        where = f"ECS service `{settings.service}` in cluster `{settings.cluster}`"
        if not services:
            reasons = ", ".join(f.get("reason", "?") for f in answer.get("failures") or [])
            raise NotFound(f"{where} was not found ({reasons or 'no answer'}).")
        service: Json = services[0]
        if service.get("status") != "ACTIVE":
            raise NotFound(f"{where} is {service.get('status')}, not ACTIVE.")
        return service

    async def _catalog(self) -> Catalog:
        """Read the service and the family's newest revisions, and name them."""
        service = await self._service()
        family, number = parse_task_definition(str(service.get("taskDefinition") or ""))
        if family != self._settings.family:
            raise Refused(
                f"ECS service `{self._settings.service}` runs task-definition family "
                f"`{family}`, but this target is configured for `{self._settings.family}`."
            )
        numbers = await self._active_numbers()
        wanted = sorted(set(numbers[: self._settings.max_revisions]) | {number}, reverse=True)
        revisions = list(await asyncio.gather(*(self._revision(n) for n in wanted)))
        current = next(r for r in revisions if r.number == number)
        return Catalog(family, service, current, revisions, version_names(revisions))

    async def _active_numbers(self) -> list[int]:
        """Return the family's ACTIVE revision numbers, newest first."""
        family = self._settings.family

        def list_all(client: Any) -> list[str]:
            pages = client.get_paginator("list_task_definitions").paginate(
                familyPrefix=family, status="ACTIVE", sort="DESC"
            )
            return [arn for page in pages for arn in page.get("taskDefinitionArns") or []]

        arns = await self._aws.read(f"listing task definitions of `{family}`", list_all)
        parsed = [parse_task_definition(arn) for arn in arns]
        # The API matches the prefix; moto ignores `sort`: filter and order here.
        return sorted((n for f, n in parsed if f == family), reverse=True)

    async def _revision(self, number: int) -> Revision:
        """Describe one revision of the family (read once, then from memory)."""
        ref = f"{self._settings.family}:{number}"
        if ref not in self._known:
            answer = await self._aws.read(
                f"describing task definition {ref}",
                lambda c: c.describe_task_definition(taskDefinition=ref),
            )
            self._known[ref] = Revision.of(answer["taskDefinition"], self._settings.container)
        return self._known[ref]

    async def _resolve(
        self, catalog: Catalog, target: str, *, any_status: bool = False
    ) -> Revision:
        """Find the revision a version name or a bare revision number means."""
        revision = await self._find(catalog, target, any_status=any_status)
        if revision is None:
            available = ", ".join(catalog.name(r.number) for r in catalog.revisions[:10])
            raise NotFound(
                f"No ACTIVE revision of `{self._settings.family}` is version `{target}` "
                f"(available: {available or 'none'})."
            )
        if revision.number == catalog.current.number:
            raise Refused(
                f"`{self._settings.service}` is already set to {catalog.label(revision.number)}."
            )
        return revision

    async def _find(self, catalog: Catalog, target: str, *, any_status: bool) -> Revision | None:
        for revision in catalog.revisions:
            if catalog.name(revision.number) == target:
                return revision
        if not target.isdigit():
            return None
        try:
            revision = await self._revision(int(target))
        except NotFound:
            return None
        return revision if any_status or revision.status == "ACTIVE" else None

    # -- rollback ---------------------------------------------------------------------------

    async def _update_service(self, catalog: Catalog, revision: Revision) -> str | None:
        """Point the service at the revision (once, never retried); return the deployment id."""
        settings = self._settings
        try:
            answer = await self._aws.call(
                f"updating ECS service `{settings.service}` to {revision.ref}",
                lambda c: c.update_service(
                    cluster=settings.cluster, service=settings.service, taskDefinition=revision.ref
                ),
            )
        except (TimedOut, Transient) as exc:
            # The request may have been applied: ask ECS before saying anything.
            try:
                service = await self._service()
            except ProviderError as again:
                raise type(exc)(
                    f"{exc.message} It may or may not have been applied.",
                    target_state=f"unknown ({again.message})",
                ) from exc
            if parse_task_definition(str(service.get("taskDefinition") or "")) != (
                revision.family,
                revision.number,
            ):
                raise type(exc)(
                    f"{exc.message} It was not applied.",
                    target_state=state_text(catalog, service, settings),
                ) from exc
            log.info("ecs.update_applied_without_answer", target=revision.ref)
            answer = {"service": service}
        except ProviderError as exc:
            exc.target_state = exc.target_state or await self._state_or_unknown(catalog)
            raise
        primary = primary_deployment(answer.get("service") or {})
        return None if primary is None else primary.get("id")

    async def _wait_stable(
        self, catalog: Catalog, revision: Revision, deployment_id: str | None, progress: Progress
    ) -> Json:
        """Poll until the rollback's deployment completes; raise when it fails or times out."""
        settings = self._settings
        deadline = time.monotonic() + settings.stable_timeout_seconds
        reported: tuple[int, ...] | None = None
        while True:
            try:
                service = await self._service()
            except ProviderError as exc:
                raise RollbackFailed(
                    f"The service was set to {revision.ref}, but rollbot lost sight of its "
                    f"deployment: {exc.message}",
                    target_state=await self._state_or_unknown(catalog),
                ) from exc
            deployment = watched_deployment(service, deployment_id)
            if deployment is None:
                breaker = breaker_rollback(service)
                if breaker is not None and breaker.in_progress:
                    raise RollbackFailed(
                        f"ECS's circuit breaker stopped this rollback: the deployment of "
                        f"{revision.ref} failed ({breaker.why}), and ECS is rolling the service "
                        f"back to {catalog.label_of(breaker.to)}.",
                        target_state=state_text(catalog, service, settings),
                    )
                raise RollbackFailed(
                    "Another deployment replaced this rollback's deployment before it completed.",
                    target_state=state_text(catalog, service, settings),
                )
            counts = task_counts(deployment)
            if counts != reported:
                reported = counts
                await progress(counts_text(deployment))
            if deployment_completed(service, deployment):
                return service
            self._raise_if_failed(catalog, service, deployment)
            if time.monotonic() >= deadline:
                raise TimedOut(
                    f"The deployment of {revision.ref} did not complete within "
                    f"{settings.stable_timeout_seconds:g} s.",
                    target_state=state_text(catalog, service, settings),
                )
            await asyncio.sleep(settings.poll_interval_seconds)

    def _raise_if_failed(self, catalog: Catalog, service: Json, deployment: Json) -> None:
        """Raise RollbackFailed when ECS gave up or tasks keep failing."""
        state = state_text(catalog, service, self._settings)
        if deployment.get("rolloutState") == "FAILED":
            reason = deployment.get("rolloutStateReason") or "no reason given"
            raise RollbackFailed(f"ECS marked the deployment FAILED: {reason}", target_state=state)
        failed = int(deployment.get("failedTasks") or 0)
        limit = self._settings.max_failed_tasks
        if limit and failed >= limit:
            raise RollbackFailed(
                f"{failed} tasks of the new deployment failed to start in a row "
                f"(limit {limit}); check the service's events and stopped tasks.",
                target_state=state,
            )

    def _refuse_fighting_ecs(self, catalog: Catalog) -> None:
        """Refuse to start a deployment while ECS's circuit breaker runs its own rollback."""
        breaker = breaker_rollback(catalog.service)
        if breaker is None or not breaker.in_progress:
            return
        failed = f"{catalog.label_of(breaker.failed)} failed" if breaker.failed else breaker.cause()
        to = catalog.label_of(breaker.to)
        raise Conflicting(
            f"ECS's circuit breaker is rolling `{self._settings.service}` back to {to} since "
            f"{breaker.when}, after {failed} ({breaker.why}). Starting another deployment "
            f"now would replace ECS's own rollback: wait until it completes (the service's "
            f"state shows its progress), then roll back again only if {to} is not what "
            "you want.",
            target_state=state_text(catalog, catalog.service, self._settings),
        )

    async def _state_or_unknown(self, catalog: Catalog) -> str:
        """Describe the state for an error message without raising a second error."""

        async def describe() -> str:
            return state_text(catalog, await self._service(), self._settings)

        return await state_or_unknown(describe)


def _plural(count: int) -> str:
    return "" if count == 1 else "s"
