"""Preflight of an `ecs` target: the exact revisions, whether the target can run, what changes.

Checks, by their stable names (a break-glass approval names the one it overrides):

- `task-definition-active`: the target revision is ACTIVE; a deregistered (INACTIVE) one
  fails, since ECS refuses to update a service to it.
- `circuit-breaker`: ECS's deployment circuit breaker is not rolling the service back
  (fails while it is: a rollback would replace ECS's own; warns when it already did).
- `deployment-controller`: the service uses the ECS controller, the only one whose task
  definition update_service can switch.
- `image-present` (providers/ecr_images.py): each image of the target revision is in ECR,
  shown with its digest; images in other registries are not checked (warn).

Changes compare the current and target task definitions: task cpu and memory, containers
added or removed, and per container its image, environment variable names (`environment`
and `secrets`; never a value), port mappings, entry point, command, cpu and memory.
"""

from __future__ import annotations

import shlex
from typing import Any

from providers.capabilities import Identity, PreflightCheck, PreflightReport, Verdict
from providers.ecs_breaker import breaker_rollback
from providers.ecs_catalog import Catalog, Revision
from providers.ecs_status import deployment_controller

Json = dict[str, Any]


def identity(catalog: Catalog, revision: Revision) -> Identity:
    """Name a revision by its version and its task-definition ARN with the revision."""
    return Identity(version=catalog.name(revision.number), exact=revision.arn or revision.ref)


def preflight_report(catalog: Catalog, target: Revision) -> PreflightReport:
    """Say exactly what runs now and what would, whether it can, and what differs."""
    return PreflightReport(
        current=identity(catalog, catalog.current),
        target=identity(catalog, target),
        checks=[active_check(target), breaker_check(catalog), controller_check(catalog.service)],
        changes=changes(catalog.current, target, catalog.service),
    )


def active_check(revision: Revision) -> PreflightCheck:
    """Pass an ACTIVE revision; fail any other, which update_service refuses."""
    name = "task-definition-active"
    if revision.status == "ACTIVE":
        return PreflightCheck(name, Verdict.PASS, f"{revision.ref} is ACTIVE.")
    if revision.status == "INACTIVE":
        why = (
            f"{revision.ref} is INACTIVE (deregistered): ECS cannot update a service to it; "
            "register its definition again as a new revision."
        )
        return PreflightCheck(name, Verdict.FAIL, why)
    why = f"{revision.ref} is {revision.status}, not ACTIVE: ECS cannot update a service to it."
    return PreflightCheck(name, Verdict.FAIL, why)


def breaker_check(catalog: Catalog) -> PreflightCheck:
    """Fail while ECS's circuit breaker rolls back; warn when it already rolled back."""
    name = "circuit-breaker"
    breaker = breaker_rollback(catalog.service)
    if breaker is None:
        why = "ECS's circuit breaker shows no rollback in the service's deployments or events."
        return PreflightCheck(name, Verdict.PASS, why)
    to = catalog.label_of(breaker.to)
    if breaker.in_progress:
        after = (
            f"{catalog.label_of(breaker.failed)} failed ({breaker.why})"
            if breaker.failed
            else breaker.cause()
        )
        why = (
            f"ECS's circuit breaker is rolling back to {to} since {breaker.when} after {after}: "
            "a rollback now would replace ECS's own."
        )
        return PreflightCheck(name, Verdict.FAIL, why)
    why = (
        f"ECS's circuit breaker already rolled back to {to} at {breaker.when} ({breaker.cause()})."
    )
    return PreflightCheck(name, Verdict.WARN, why)


def controller_check(service: Json) -> PreflightCheck:
    """Pass the ECS deployment controller; fail CODE_DEPLOY and EXTERNAL."""
    name = "deployment-controller"
    controller = deployment_controller(service)
    if controller == "ECS":
        return PreflightCheck(name, Verdict.PASS, "The service uses the ECS deployment controller.")
    why = (
        f"The service uses the {controller} deployment controller: update_service cannot "
        "switch its task definition."
    )
    return PreflightCheck(name, Verdict.FAIL, why)


def changes(current: Revision, target: Revision, service: Json) -> list[str]:
    """Say what differs between the current and the target task definitions, one line each."""
    now, then = current.definition, target.definition
    lines = [
        *_setting("task cpu", now.get("cpu"), then.get("cpu"), "units"),
        *_setting("task memory", now.get("memory"), then.get("memory"), "MiB"),
    ]
    before, after = _containers(now), _containers(then)
    added = [n for n in after if n not in before]
    removed = [n for n in before if n not in after]
    if added:
        lines.append(f"containers added: {', '.join(added)}")
    if removed:
        lines.append(f"containers removed: {', '.join(removed)}")
    for name, container in after.items():
        if name in before:
            lines.extend(_container_changes(name, before[name], container))
    if not lines:
        lines.append("containers: the same images, env names, ports, commands, cpu and memory")
    if int(service.get("desiredCount") or 0) == 0:
        # The count is the service's, not the revision's: worth a line only when it is 0.
        lines.append(
            "replicas: 0 desired (the service's setting, unchanged): no task will run the target"
        )
    return lines


def _containers(definition: Json) -> dict[str, Json]:
    return {str(c.get("name")): c for c in definition.get("containerDefinitions") or []}


def _container_changes(name: str, now: Json, then: Json) -> list[str]:
    lines = []
    if now.get("image") != then.get("image"):
        lines.append(f"{name}: image: {now.get('image')} -> {then.get('image')}")
    had, has = _env_names(now), _env_names(then)
    parts = [
        f"{word}: {', '.join(sorted(names))}"
        for word, names in (("added", has - had), ("removed", had - has))
        if names
    ]
    if parts:
        lines.append(f"{name}: env names {'; '.join(parts)}")
    ports = _ports(now), _ports(then)
    if ports[0] != ports[1]:
        lines.append(f"{name}: ports: {ports[0]} -> {ports[1]}")
    for key, label in (("entryPoint", "entry point"), ("command", "command")):
        if (now.get(key) or []) != (then.get(key) or []):
            lines.append(f"{name}: {label}: {_argv(now.get(key))} -> {_argv(then.get(key))}")
    for key, label, unit in (
        ("cpu", "cpu", "units"),
        ("memory", "memory", "MiB"),
        ("memoryReservation", "memory reservation", "MiB"),
    ):
        lines.extend(_setting(f"{name}: {label}", now.get(key), then.get(key), unit))
    return lines


def _env_names(container: Json) -> set[str]:
    """Names of the variables set from values and from secrets (the values are never read)."""
    entries = [*(container.get("environment") or []), *(container.get("secrets") or [])]
    return {str(e.get("name")) for e in entries if e.get("name")}


def _ports(container: Json) -> str:
    mappings = []
    for mapping in container.get("portMappings") or []:
        port, host = mapping.get("containerPort"), mapping.get("hostPort")
        published = f"{host}:{port}" if host and host != port else str(port)
        mappings.append(f"{published}/{mapping.get('protocol') or 'tcp'}")
    return ", ".join(mappings) or "none"


def _argv(argv: list[str] | None) -> str:
    return shlex.join(argv) if argv else "the image's default"


def _setting(label: str, now: Any, then: Any, unit: str) -> list[str]:
    # ECS leaves an unset value out or reports 0: both mean "not set".
    now, then = now or None, then or None
    if str(now) == str(then):
        return []
    return [f"{label}: {now or 'none'} -> {then or 'none'} {unit}"]
