"""Preflight: before anyone approves, what exactly will run, whether it can, and what changes.

Planning asks each step's target that has the `Preflight` capability for a report and
keeps it on the plan step (the card shows it). A failing check blocks a plain approval:
only a break-glass approval whose reason names every failing check goes ahead. At the
moment of approval, what runs is asked again: if it is not what the card showed (someone
deployed meanwhile), the approval is refused and the plan is made again.
"""

from __future__ import annotations

import re

from bot.models import PlanStep, PreflightItem, Rollback, StepStatus
from bot.pool import ProviderPool, Target
from providers.base import ProviderError
from providers.capabilities import ClearsState, Describe, Preflight, Verdict

# How the card marks each verdict.
VERDICT_ICONS: dict[str, str] = {
    Verdict.PASS: ":white_check_mark:",
    Verdict.WARN: ":warning:",
    Verdict.FAIL: ":x:",
}


async def preflight_step(target: Target, step: PlanStep) -> PlanStep:
    """Return `step` with the target's preflight report, when it has the capability.

    A preflight that cannot run is itself a failing check: whether the target can run is
    then unknown, and an unknown is not a pass.
    """
    if not isinstance(target, Preflight) or step.target is None:
        return step
    try:
        report = await target.preflight(step.target)
    except ProviderError as exc:
        failed = PreflightItem(
            name="preflight", verdict=Verdict.FAIL, why=f"could not be run: {exc.message}"
        )
        return step.model_copy(update={"preflight": [failed]})
    return step.model_copy(
        update={
            "identity_current": report.current.exact if report.current else None,
            "build_current": report.current.build if report.current else None,
            "identity_target": report.target.exact,
            "preflight": [
                PreflightItem(name=c.name, verdict=c.verdict.value, why=c.why)
                for c in report.checks
            ],
            "changes": list(report.changes),
        }
    )


def unnamed_overrides(reason: str, failing: list[PreflightItem]) -> list[str]:
    """Return the failing checks a break-glass reason does not name (it must name each)."""
    words = set(re.findall(r"[a-z0-9][a-z0-9-]*", reason.lower()))
    return [item.name for item in failing if item.name.lower() not in words]


async def changed_since_shown(pool: ProviderPool, rollback: Rollback) -> str | None:
    """Say how what runs differs from what the card showed, or None when it is the same.

    Each step still to run is asked: by its exact identity when it can say it, else by
    its version. A target that cannot be asked counts as changed: approving blind is what
    this check prevents.
    """
    for index, step in enumerate(rollback.steps):
        if step.status is not StepStatus.PENDING or step.current is None:
            continue
        target = pool.step(rollback.service, rollback.environment, index)
        if isinstance(target, ClearsState):
            continue
        try:
            if isinstance(target, Describe) and step.identity_current is not None:
                now, shown = (await target.identity_now()).exact, step.identity_current
            else:
                now, shown = await target.current_version(), step.current
        except ProviderError as exc:
            return f"what {step.name} runs now could not be checked ({exc.message})"
        if now != shown:
            where = f"{step.name} " if rollback.multi_step else ""
            return f"the card showed {where}{shown}, but {now} runs now"
    return None
