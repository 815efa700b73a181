"""How an ECS service stands, read from describe_services and said in words.

The PRIMARY deployment is the one ECS is rolling out; its task counts and `rolloutState`
tell whether it completed. The texts here go into plans, version listings, progress and
the target state of error messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from providers.base import Refused
from providers.ecs_breaker import BreakerRollback, breaker_rollback
from providers.ecs_catalog import Catalog, Revision

if TYPE_CHECKING:
    from providers.ecs import EcsSettings

Json = dict[str, Any]


def primary_deployment(service: Json) -> Json | None:
    """Return the deployment ECS is rolling out now."""
    return next((d for d in service.get("deployments") or [] if d.get("status") == "PRIMARY"), None)


def deployment_controller(service: Json) -> str:
    """Return the service's deployment controller: ECS, CODE_DEPLOY or EXTERNAL."""
    return str((service.get("deploymentController") or {}).get("type") or "ECS")


def refuse_unsupported(service: Json) -> None:
    """Refuse services whose task definition update_service cannot change."""
    controller = deployment_controller(service)
    if controller != "ECS":
        raise Refused(
            f"The service uses the {controller} deployment controller: update_service cannot "
            "switch its task definition (use the ecs_blue_green provider for CodeDeploy)."
        )


def watched_deployment(service: Json, deployment_id: str | None) -> Json | None:
    """Return the rollback's deployment while it is still the PRIMARY one."""
    primary = primary_deployment(service)
    if primary is None or (deployment_id is not None and primary.get("id") != deployment_id):
        return None
    return primary


def task_counts(deployment: Json) -> tuple[int, ...]:
    """Return the deployment's running, pending, desired and failed task counts."""
    keys = ("runningCount", "pendingCount", "desiredCount", "failedTasks")
    return tuple(int(deployment.get(k) or 0) for k in keys)


def counts_text(deployment: Json) -> str:
    """Say how the deployment's tasks stand, for progress."""
    running, pending, desired, failed = task_counts(deployment)
    text = f"Tasks: {running} running, {pending} pending of {desired} desired"
    if failed:
        text += f", {failed} failed"
    rollout = deployment.get("rolloutState")
    return f"{text} (rollout {rollout})." if rollout else f"{text}."


def deployment_completed(service: Json, deployment: Json) -> bool:
    """Tell whether the deployment is done: COMPLETED, or stable where ECS gives no state."""
    running, pending, desired, _ = task_counts(deployment)
    if running != desired:
        return False
    rollout = deployment.get("rolloutState")
    if rollout is not None:
        return bool(rollout == "COMPLETED")
    # No rolloutState (e.g. behind a Classic Load Balancer): the services_stable test.
    return pending == 0 and len(service.get("deployments") or []) == 1


def state_text(catalog: Catalog, service: Json, settings: EcsSettings) -> str:
    """Say what the service is set to and how each of its deployments stands."""
    deployments = "; ".join(_deployment_text(catalog, d) for d in service.get("deployments") or [])
    return (
        f"ECS service `{settings.service}` (cluster `{settings.cluster}`) is set to "
        f"{catalog.label_of(str(service.get('taskDefinition') or ''))}: "
        f"{service.get('runningCount', 0)} running, {service.get('pendingCount', 0)} pending "
        f"of {service.get('desiredCount', 0)} desired"
        + (f"; deployments: {deployments}" if deployments else "")
    )


def _deployment_text(catalog: Catalog, deployment: Json) -> str:
    running, pending, desired, failed = task_counts(deployment)
    task_definition = catalog.label_of(str(deployment.get("taskDefinition") or ""))
    rollout = deployment.get("rolloutState") or "no rollout state"
    tail = f", {failed} failed" if failed else ""
    return (
        f"{deployment.get('status')} {task_definition} {rollout} "
        f"({running}/{desired} running, {pending} pending{tail})"
    )


def plan_warnings(catalog: Catalog, revision: Revision) -> list[str]:
    """Warn about what a rollback to the revision changes or runs into."""
    warnings = []
    if revision.image == catalog.current.image:
        warnings.append(
            f"{revision.ref} runs the same image as now ({revision.image}): only the "
            "task-definition settings change."
        )
    service = catalog.service
    if len(service.get("deployments") or []) > 1:
        warnings.append("A deployment is still in progress; the rollback replaces it.")
    rolled = breaker_rollback(service)
    if rolled is not None and not rolled.in_progress:
        warnings.append(
            f"ECS's circuit breaker already rolled back `{service.get('serviceName')}` to "
            f"{catalog.label_of(rolled.to)} at {rolled.when} ({rolled.cause()}); this rollback "
            f"goes further back, to {catalog.label(revision.number)}."
        )
    breaker = (service.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
    if breaker.get("enable") and breaker.get("rollback"):
        warnings.append(
            "The circuit breaker has rollback on: if the new tasks fail, ECS itself returns "
            f"the service to {catalog.label(catalog.current.number)}."
        )
    return warnings


def breaker_note(catalog: Catalog, breaker: BreakerRollback | None, revision: Revision) -> str:
    """Label the revision ECS's circuit breaker rolled back to, and the one that failed."""
    if breaker is None:
        return ""
    to = catalog.label_of(breaker.to)
    if to == catalog.label(revision.number):
        if breaker.in_progress:
            return f"; ECS's circuit breaker is rolling back to {revision.ref} since {breaker.when}"
        return (
            f"; ECS's circuit breaker already rolled back to {revision.ref} at {breaker.when} "
            f"({breaker.cause()})"
        )
    if breaker.failed and catalog.label_of(breaker.failed) == catalog.label(revision.number):
        return f"; its deployment failed at {breaker.when} ({breaker.why}) and ECS rolled it back"
    return ""
