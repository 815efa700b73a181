"""ECS blue/green provider: switch an ALB listener back to the other target group.

The two versions are the target groups, named by their labels (`blue`, `green`). The
current one is where the listener's default forward action sends traffic (with weights,
the heaviest group); the previous stable one is the other. A target group's name is an
alias of its label.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Literal, Self

import structlog
from pydantic import Field, model_validator

from providers.aws import AwsApi, AwsSettings
from providers.base import NotFound, Outcome, Plan, Progress, Refused, RollbackFailed, Version

log = structlog.get_logger(__name__)

Json = dict[str, Any]
# What chat can type as a version (bot/names.py's VERSION_PATTERN).
LABEL_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"


class EcsBlueGreenSettings(AwsSettings):
    """Settings of an `ecs_blue_green` target."""

    provider: Literal["ecs_blue_green"]
    listener_arn: str = Field(description="ARN of the ALB listener that takes the traffic.")
    blue_target_group_arn: str = Field(description="ARN of the blue target group.")
    green_target_group_arn: str = Field(description="ARN of the green target group.")
    blue_label: str = Field(
        default="blue", pattern=LABEL_PATTERN, description="Version name of the blue group."
    )
    green_label: str = Field(
        default="green", pattern=LABEL_PATTERN, description="Version name of the green group."
    )

    @model_validator(mode="after")
    def _two_distinct_groups(self) -> Self:
        """Refuse a config whose two colours are the same group or share a label."""
        if self.blue_target_group_arn == self.green_target_group_arn:
            raise ValueError("blue_target_group_arn and green_target_group_arn must differ")
        if self.blue_label == self.green_label:
            raise ValueError("blue_label and green_label must differ")
        return self


@dataclass(frozen=True)
class Group:
    """One colour: its label and its target group's ARN."""

    label: str
    arn: str


class EcsBlueGreenProvider:
    """Roll back a blue/green service by forwarding its listener to the other group."""

    def __init__(self, settings: EcsBlueGreenSettings) -> None:
        self._settings = settings
        self._aws = AwsApi("elbv2", settings)
        self._groups = (
            Group(settings.blue_label, settings.blue_target_group_arn),
            Group(settings.green_label, settings.green_target_group_arn),
        )

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the label of the group the listener forwards to."""
        return self._current(await self._listener()).label

    async def list_versions(self) -> list[Version]:
        """Return both groups, the live one first and marked current, the other previous."""
        current = self._current(await self._listener())
        names = await self._group_names()
        ordered = sorted(self._groups, key=lambda g: g != current)
        return [
            Version(
                name=group.label,
                current=group == current,
                previous_stable=group != current,
                detail=f"target group {names.get(group.arn, '?')} ({group.arn})",
                aliases=(names[group.arn],) if group.arn in names else (),
            )
            for group in ordered
        ]

    async def plan(self, target: str) -> Plan:
        """Show both target groups and the listener change, changing nothing."""
        listener = await self._listener()
        current = self._current(listener)
        group = self._target(target, current)
        names = await self._group_names()
        health = {g.arn: await self._health(g.arn) for g in self._groups}
        steps = [
            f"Listener {self._settings.listener_arn} forwards to {current.label} "
            f"({names.get(current.arn, '?')}: {_health_text(health[current.arn])}).",
            f"Call elbv2:ModifyListener with its {len(listener.get('DefaultActions') or [])} "
            f"default action(s), the forward action now sending all traffic to {group.label} "
            f"({names.get(group.arn, '?')}: {_health_text(health[group.arn])}); "
            "the switch is immediate.",
            f"Read the listener back (describe_listeners) to confirm it forwards to {group.label}.",
        ]
        warnings = []
        if not health[group.arn].get("healthy"):
            warnings.append(
                f"{group.label} has no healthy target: after the switch the listener sends "
                "traffic to nothing healthy."
            )
        return Plan(steps=steps, warnings=warnings)

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Forward the listener to the target group, then confirm it by reading it back."""
        started = time.monotonic()
        listener = await self._listener()
        current = self._current(listener)
        group = self._target(target, current)
        actions = _switched(listener.get("DefaultActions") or [], group.arn)
        arn = self._settings.listener_arn
        await self._aws.call(
            f"switching listener {arn} to {group.label}",
            lambda c: c.modify_listener(ListenerArn=arn, DefaultActions=actions),
        )
        await progress(f"Listener switched from {current.label} to {group.label}; confirming…")
        now = _forward_target(await self._listener())
        if now != group.arn:
            raise RollbackFailed(
                f"The listener was modified, but it does not forward to {group.label} "
                f"({group.arn}) when read back.",
                target_state=await self.describe_state(),
            )
        log.info("ecs_blue_green.rollback", target=group.label, seconds=time.monotonic() - started)
        return Outcome(
            summary=f"Listener now forwards all traffic to {group.label} ({group.arn}).",
            notes=[f"{current.label} ({current.arn}) takes no traffic now; it is kept as is."],
        )

    async def describe_state(self) -> str:
        """Say which target group the listener forwards to now."""
        listener = await self._listener()
        arn = _forward_target(listener)
        known = {g.arn: g.label for g in self._groups}
        weights = _weights(listener)
        split = ", ".join(f"{known.get(a, a)} {w}" for a, w in weights.items())
        where = known.get(arn or "", arn or "no target group")
        text = f"Listener {self._settings.listener_arn} forwards to {where}"
        return f"{text} (weights: {split})" if len(weights) > 1 else text

    async def aclose(self) -> None:
        """Close the ELBv2 client."""
        await self._aws.aclose()

    # -- reads ------------------------------------------------------------------------------

    async def _listener(self) -> Json:
        arn = self._settings.listener_arn
        answer = await self._aws.read(
            f"describing listener {arn}", lambda c: c.describe_listeners(ListenerArns=[arn])
        )
        listeners = answer.get("Listeners") or []
        if not listeners:
            raise NotFound(f"Listener {arn} was not found.")
        listener: Json = listeners[0]
        return listener

    async def _group_names(self) -> dict[str, str]:
        arns = [g.arn for g in self._groups]
        answer = await self._aws.read(
            "describing the blue and green target groups",
            lambda c: c.describe_target_groups(TargetGroupArns=arns),
        )
        return {g["TargetGroupArn"]: g["TargetGroupName"] for g in answer.get("TargetGroups") or []}

    async def _health(self, arn: str) -> dict[str, int]:
        """Count a target group's targets by health state."""
        answer = await self._aws.read(
            f"reading target health of {arn}",
            lambda c: c.describe_target_health(TargetGroupArn=arn),
        )
        counts: dict[str, int] = {}
        for target in answer.get("TargetHealthDescriptions") or []:
            state = str((target.get("TargetHealth") or {}).get("State") or "unknown")
            counts[state] = counts.get(state, 0) + 1
        return counts

    def _current(self, listener: Json) -> Group:
        arn = _forward_target(listener)
        for group in self._groups:
            if group.arn == arn:
                return group
        raise Refused(
            f"Listener {self._settings.listener_arn} forwards to {arn or 'no target group'}, "
            "neither the blue nor the green target group configured here."
        )

    def _target(self, target: str, current: Group) -> Group:
        group = next((g for g in self._groups if g.label == target), None)
        if group is None:
            labels = ", ".join(g.label for g in self._groups)
            raise NotFound(f"No target group is version `{target}` (available: {labels}).")
        if group == current:
            raise Refused(f"The listener already forwards to {group.label}.")
        return group


def _forward_action(actions: list[Json]) -> Json | None:
    return next((a for a in actions if a.get("Type") == "forward"), None)


def _weights(listener: Json) -> dict[str, int]:
    """Return the forward action's target groups with their weights."""
    action = _forward_action(listener.get("DefaultActions") or []) or {}
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
    if groups:
        return {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
    arn = action.get("TargetGroupArn")
    return {arn: 1} if arn else {}


def _forward_target(listener: Json) -> str | None:
    """Return the target group taking the traffic: the only one, or the heaviest."""
    weights = _weights(listener)
    return max(weights, key=lambda arn: weights[arn]) if weights else None


def _switched(actions: list[Json], arn: str) -> list[Json]:
    """Return the full default action list with the forward action sending all to `arn`."""
    result = copy.deepcopy(actions)
    forward = _forward_action(result)
    if forward is None:
        raise Refused("The listener has no forward default action to switch.")
    forward_config = forward.get("ForwardConfig")
    if forward_config:
        # Keep stickiness; TargetGroupArn and ForwardConfig must then agree, so drop it.
        forward_config["TargetGroups"] = [{"TargetGroupArn": arn, "Weight": 1}]
        forward.pop("TargetGroupArn", None)
    else:
        forward["TargetGroupArn"] = arn
    for action in result:
        oidc = action.get("AuthenticateOidcConfig")
        # describe_listeners never returns the client secret; reuse the stored one.
        if oidc is not None and "ClientSecret" not in oidc:
            oidc["UseExistingClientSecret"] = True
    return result


def _health_text(counts: dict[str, int]) -> str:
    if not counts:
        return "no registered targets"
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
