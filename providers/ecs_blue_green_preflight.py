"""Preflight of an `ecs_blue_green` target: the exact groups, whether the other one can take
the traffic, and what changes.

A colour's exact identity is its target group's ARN and what runs there: its registered
targets (`id:port`; more than five are named by a digest of the set), and the forward
action's weights when it splits traffic. The one check, by its stable name:

- `target-group-healthy`: the target group has healthy targets; it fails when it has none
  registered, none healthy, or its health cannot be read, and warns when some are not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from providers.base import ProviderError
from providers.capabilities import Identity, PreflightCheck, PreflightReport, Verdict
from providers.target_health import Health

if TYPE_CHECKING:
    from providers.ecs_blue_green import Group

# Up to this many targets are listed by id; more are named by a digest of the set.
LISTED_TARGETS = 5
CHECK = "target-group-healthy"


async def health_or_error(read: Awaitable[Health]) -> Health | ProviderError:
    """Read a group's health; a failed read is kept for the report rather than raised."""
    try:
        return await read
    except ProviderError as exc:
        return exc


def group_identity(
    group: Group, health: Health | ProviderError, weights: dict[str, int], groups: tuple[Group, ...]
) -> Identity:
    """Name a colour by its label, its target group's ARN, its targets and the split."""
    parts = [_targets(health)]
    if len(weights) > 1:
        labels = {g.arn: g.label for g in groups}
        parts.append("weights " + ", ".join(f"{labels.get(a, a)} {w}" for a, w in weights.items()))
    return Identity(version=group.label, exact=f"{group.arn} ({'; '.join(parts)})")


def preflight_report(
    current: Group,
    target: Group,
    weights: dict[str, int],
    health: dict[str, Health | ProviderError],
    groups: tuple[Group, ...],
) -> PreflightReport:
    """Say which groups take the traffic now and after, whether the target can, and what changes."""
    return PreflightReport(
        current=group_identity(current, health[current.arn], weights, groups),
        target=group_identity(target, health[target.arn], {}, groups),
        checks=[health_check(target, health[target.arn])],
        changes=changes(current, target, weights, health, groups),
    )


def health_check(group: Group, health: Health | ProviderError) -> PreflightCheck:
    """Fail a group with no healthy target (or unreadable health); warn when some are not."""
    if isinstance(health, ProviderError):
        why = f"{group.label}'s target health could not be read: {health.message}"
        return PreflightCheck(CHECK, Verdict.FAIL, why)
    where = f"{group.label} (target group {_name(group.arn)})"
    total = len(health.targets)
    if not total:
        why = f"{where} has no registered targets: all traffic would go to nothing."
        return PreflightCheck(CHECK, Verdict.FAIL, why)
    counted = f"{where}: {health.healthy}/{total} targets healthy"
    if health.healthy == total:
        return PreflightCheck(CHECK, Verdict.PASS, f"{counted}.")
    why = f"{counted}; {health.text(skip_healthy=True)}."
    if health.healthy:
        return PreflightCheck(CHECK, Verdict.WARN, why)
    if health.not_in_use:
        why += " AWS does not health-check a group no listener rule uses."
    return PreflightCheck(CHECK, Verdict.FAIL, why)


def changes(
    current: Group,
    target: Group,
    weights: dict[str, int],
    health: dict[str, Health | ProviderError],
    groups: tuple[Group, ...],
) -> list[str]:
    """Say how the traffic moves and how many targets serve it before and after."""
    labels = {g.arn: g.label for g in groups}
    total = sum(weights.values()) or 1
    now = (
        ", ".join(f"{labels.get(a, a)} {round(100 * w / total)}%" for a, w in weights.items())
        if len(weights) > 1
        else f"all to {current.label}"
    )
    lines = [f"traffic: {now} -> all to {target.label}"]
    before, after = health[current.arn], health[target.arn]
    if isinstance(before, Health) and isinstance(after, Health):
        had, has = len(before.targets), len(after.targets)
        if had != has:
            lines.append(
                f"replicas: {_count(had)} in {current.label} -> {_count(has)} in {target.label}"
            )
    return lines


def _targets(health: Health | ProviderError) -> str:
    if isinstance(health, ProviderError):
        return "targets unknown: unreadable"
    ids = sorted(health.ids)
    if not ids:
        return "no registered targets"
    if len(ids) <= LISTED_TARGETS:
        return "targets " + ", ".join(ids)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
    return f"{len(ids)} targets, set {digest}"


def _name(arn: str) -> str:
    """Return a target group's name from its ARN (`...:targetgroup/NAME/id`)."""
    _, _, resource = arn.rpartition(":")
    parts = resource.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == "targetgroup" else arn


def _count(n: int) -> str:
    return f"{n} target" if n == 1 else f"{n} targets"
