"""ECS blue/green provider: switch an ALB listener back to the other target group.

The two versions are the target groups, named by their labels (`blue`, `green`). The
current one is where the listener's default forward action sends traffic (with weights,
the heaviest group); the previous stable one is the other. A target group's name is an
alias of its label.

Before the switch the other group must have a healthy target: an empty group or one
whose targets are all unhealthy is refused with the states and reasons AWS gives. After
the switch the listener and the group's target health are read until the listener
forwards there and the health checks settled with a healthy target, under a deadline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal, Self

import structlog
from pydantic import Field, model_validator

from providers.alb_actions import forward_target, forward_weights, switched
from providers.aws import AwsApi, AwsSettings
from providers.base import (
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
    say,
    state_or_unknown,
)
from providers.capabilities import Identity, PreflightReport
from providers.ecs_blue_green_preflight import group_identity, health_or_error, preflight_report
from providers.ecs_freeze import BLUE_GREEN, WatchOnlyFreeze
from providers.target_health import Health, partly_healthy

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
    poll_interval_seconds: float = Field(
        default=5,
        gt=0,
        description="Pace of the listener and target-health reads after the switch.",
    )
    settle_timeout_seconds: float = Field(
        default=300,
        gt=0,
        description=(
            "How long the listener and the group's health checks may take to settle after "
            "the switch (ALB default: 5 checks of 30 s for a new target)."
        ),
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


class EcsBlueGreenProvider(WatchOnlyFreeze):
    """Roll back a blue/green service by forwarding its listener to the other group."""

    watch_only_because = BLUE_GREEN

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
        self._refuse_unready(group, names, health[group.arn], listener)
        settings = self._settings
        steps = [
            f"Listener {settings.listener_arn} forwards to {current.label} "
            f"({names.get(current.arn, '?')}: {health[current.arn].text()}).",
            f"Call elbv2:ModifyListener with its {len(listener.get('DefaultActions') or [])} "
            f"default action(s), the forward action now sending all traffic to {group.label} "
            f"({names.get(group.arn, '?')}: {health[group.arn].text()}).",
            f"Read the listener (describe_listeners) and {group.label}'s target health "
            "(describe_target_health) every "
            f"{settings.poll_interval_seconds:g} s for up to "
            f"{settings.settle_timeout_seconds:g} s: wait until it forwards to {group.label} "
            f"and {group.label} has healthy targets with their health checks settled.",
        ]
        return Plan(steps=steps, warnings=partly_healthy(group.label, health[group.arn]))

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Forward the listener to the target group, then wait until it serves from there."""
        started = time.monotonic()
        listener = await self._listener()
        current = self._current(listener)
        group = self._target(target, current)
        health = await self._health(group.arn)
        if not health.targets or not health.healthy:
            self._refuse_unready(group, await self._group_names(), health, listener)
        await self._switch(listener, group)
        await say(
            progress,
            f"Listener switched from {current.label} to {group.label}; waiting for it to "
            f"forward there and for {group.label}'s targets to be healthy…",
        )
        health = await self._settle(group, progress)
        log.info("ecs_blue_green.rollback", target=group.label, seconds=time.monotonic() - started)
        return Outcome(
            summary=(
                f"Listener now forwards all traffic to {group.label} ({group.arn}); "
                f"{health.healthy}/{len(health.targets)} targets of {group.label} healthy."
            ),
            notes=[
                f"{current.label} ({current.arn}) takes no traffic now; it is kept as is.",
                *(
                    [f"{group.label}: {health.text()}."]
                    if health.healthy < len(health.targets)
                    else []
                ),
            ],
        )

    # -- Preflight and Describe -------------------------------------------------------------

    async def preflight(self, target: str) -> PreflightReport:
        """Check that the other group can take the traffic and say what changes (reads only)."""
        listener = await self._listener()
        current = self._current(listener)
        group = self._target(target, current)
        health = {g.arn: await health_or_error(self._health(g.arn)) for g in (current, group)}
        return preflight_report(current, group, forward_weights(listener), health, self._groups)

    async def identity_now(self) -> Identity:
        """Return the group the listener forwards to, with its targets and the split."""
        listener = await self._listener()
        current = self._current(listener)
        health = await self._health(current.arn)
        return group_identity(current, health, forward_weights(listener), self._groups)

    async def describe_state(self) -> str:
        """Say which target group the listener forwards to now."""
        return self._state_text(await self._listener())

    def _state_text(self, listener: Json) -> str:
        arn = forward_target(listener)
        known = {g.arn: g.label for g in self._groups}
        weights = forward_weights(listener)
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

    async def _health(self, arn: str) -> Health:
        """Read a target group's targets with their health state, reason and description."""
        answer = await self._aws.read(
            f"reading target health of {arn}",
            lambda c: c.describe_target_health(TargetGroupArn=arn),
        )
        targets, ids = [], []
        for target in answer.get("TargetHealthDescriptions") or []:
            health = target.get("TargetHealth") or {}
            where = target.get("Target") or {}
            port = where.get("Port")
            ids.append(f"{where.get('Id')}:{port}" if port else str(where.get("Id")))
            targets.append(
                (
                    str(health.get("State") or "unknown"),
                    health.get("Reason"),
                    health.get("Description"),
                )
            )
        return Health(tuple(targets), tuple(ids))

    def _refuse_unready(
        self, group: Group, names: dict[str, str], health: Health, listener: Json
    ) -> None:
        """Refuse switching to a group with no target or no healthy one, saying why."""
        state = self._state_text(listener)
        name = names.get(group.arn, group.arn)
        if not health.targets:
            raise Refused(
                f"Target group {name} has no registered targets: switching to {group.label} "
                "would send all traffic to nothing. Start its ECS tasks (or register "
                "targets) first.",
                target_state=state,
            )
        if health.healthy:
            return
        advice = (
            f" AWS does not health-check a target group no listener rule uses: attach {name} "
            "to a rule (a test listener, or weight 0 in the forward action) and try again."
            if health.not_in_use
            else f" Fix {group.label}'s targets first; the listener is left as it is."
        )
        raise Refused(
            f"{group.label} has no healthy target ({len(health.targets)} registered in "
            f"target group {name}): {health.text()}.{advice}",
            target_state=state,
        )

    async def _switch(self, listener: Json, group: Group) -> None:
        """Modify the listener once; on a lost answer, read it back before saying anything."""
        actions = switched(listener.get("DefaultActions") or [], group.arn)
        arn = self._settings.listener_arn
        try:
            await self._aws.call(
                f"switching listener {arn} to {group.label}",
                lambda c: c.modify_listener(ListenerArn=arn, DefaultActions=actions),
            )
        except (TimedOut, Transient) as exc:
            try:
                now = await self._listener()
            except ProviderError as again:
                raise type(exc)(
                    f"{exc.message} It may or may not have been applied.",
                    target_state=f"unknown ({again.message})",
                ) from exc
            if forward_target(now) != group.arn:
                raise type(exc)(
                    f"{exc.message} It was not applied.", target_state=self._state_text(now)
                ) from exc
            log.info("ecs_blue_green.switch_applied_without_answer", target=group.label)
        except ProviderError as exc:
            exc.target_state = await state_or_unknown(self.describe_state)
            raise

    async def _settle(self, group: Group, progress: Progress) -> Health:
        """Read until the listener forwards to `group` and its health checks settled."""
        settings = self._settings
        deadline = time.monotonic() + settings.settle_timeout_seconds
        reported = ""
        while True:
            listener = await self._listener()
            forwards = forward_target(listener) == group.arn
            health = await self._health(group.arn) if forwards else Health(())
            if forwards and health.text() != reported:
                reported = health.text()
                await say(progress, f"{group.label}: {reported}.")
            late = time.monotonic() >= deadline
            if forwards and health.healthy and (not health.settling or late):
                return health
            if late:
                waited = f"{settings.settle_timeout_seconds:g} s"
                if not forwards:
                    raise RollbackFailed(
                        f"The listener was modified, but it does not forward to {group.label} "
                        f"({group.arn}) when read back after {waited}.",
                        target_state=self._state_text(listener),
                    )
                raise TimedOut(
                    f"The listener forwards to {group.label}, but {group.label} has no healthy "
                    f"target after {waited}: {health.text()}.",
                    target_state=self._state_text(listener),
                )
            await asyncio.sleep(settings.poll_interval_seconds)

    def _current(self, listener: Json) -> Group:
        arn = forward_target(listener)
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
