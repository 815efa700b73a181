"""Rollback plans: the provider's step, then each configured step, all planned read-only."""

from __future__ import annotations

from bot.config import PREVIOUS, StepConfig
from bot.errors import InvalidRequest
from bot.models import PlanStep, StepStatus
from bot.pool import ProviderPool, Target
from bot.preflight import preflight_step
from providers import BY_NAME
from providers.base import Outcome, Progress, ProviderError, Version
from providers.capabilities import ClearsState, RevertsCommits


def shown_names(versions: list[Version], typed: dict[str, str | None]) -> dict[str, str]:
    """Map versions (to what the user typed for each, if anything) to how messages show them.

    Only versions a platform names by an id are mapped; others are shown by their name.
    """
    shown = {v.name: v.shown(typed[v.name]) for v in versions if v.name in typed}
    return {name: said for name, said in shown.items() if said != name}


async def plan_first(
    pool: ProviderPool,
    service: str,
    env: str,
    current: str,
    target: str,
    bad_commit: str | None,
    shown_as: dict[str, str] | None = None,
) -> PlanStep:
    """Plan step 1: the environment's provider going back to `target` (or reverting a commit).

    `shown_as` maps the versions a platform names by an id to how messages show them.
    """
    provider = pool.get(service, env)
    kind = pool.kind(service, env)
    try:
        if bad_commit is None:
            plan = await provider.plan(target)
        elif isinstance(provider, RevertsCommits):
            plan = await provider.plan_revert(bad_commit)
        else:
            raise InvalidRequest(
                f"{service}/{env} runs on {kind}, which cannot revert a named commit; "
                "name a version instead."
            )
    except ProviderError as exc:
        raise InvalidRequest(f"Cannot plan the rollback of {service}/{env}: {exc.message}") from exc
    step = PlanStep(
        name=kind,
        kind=kind,
        current=current,
        target=target,
        plan=plan.steps,
        warnings=plan.warnings,
        restores=BY_NAME[kind].restore_kind,
        shown_as=shown_as or {},
    )
    # A named-commit revert runs what the branch has: there is no version to preflight.
    return step if bad_commit is not None else await preflight_step(provider, step)


async def plan_later(
    pool: ProviderPool, service: str, env: str, steps: list[StepConfig], target: str
) -> list[PlanStep]:
    """Plan every further step in order; a step already at its version is skipped."""
    planned = []
    for index, config in enumerate(steps, 1):
        where = f"step {index + 1} ({config.label}) of {service}/{env}"
        try:
            planned.append(await _plan_step(pool.step(service, env, index), config, target))
        except ProviderError as exc:
            raise InvalidRequest(f"Cannot plan {where}: {exc.message}") from exc
        except InvalidRequest as exc:
            raise InvalidRequest(f"Cannot plan {where}: {exc.message}") from exc
    return planned


async def _plan_step(target: Target, config: StepConfig, service_target: str) -> PlanStep:
    kind = config.provider.provider
    restores = BY_NAME[kind].restore_kind
    if isinstance(target, ClearsState):
        plan = await target.plan_clear()
        danger = (
            f"{config.label}: FLUSHDB empties the whole Redis database"
            if getattr(config.provider, "flush_database", False)
            else None
        )
        return PlanStep(
            name=config.label,
            kind=kind,
            plan=plan.steps,
            warnings=plan.warnings,
            danger=danger,
            restores=restores,
        )
    versions = await target.list_versions()
    current = next((v.name for v in versions if v.current), None)
    wanted = config.targets.get(service_target, config.target)
    if wanted == PREVIOUS:
        found = next((v for v in versions if v.previous_stable), None)
        if found is None:
            running = current or "nothing known"
            raise InvalidRequest(f"it runs {running} and has no earlier version.")
    else:
        found = next((v for v in versions if v.answers_to(wanted)), None)
        if found is None:
            listed = ", ".join(v.name for v in versions[:10]) or "none"
            raise InvalidRequest(f"version {wanted} is not available (available: {listed}).")
    step = PlanStep(
        name=config.label,
        kind=kind,
        current=current,
        target=found.name,
        restores=restores,
        shown_as=shown_names(versions, {current or "": None, found.name: wanted}),
    )
    if found.name == current:
        said = step.shown_as.get(found.name, found.name)
        return step.model_copy(
            update={
                "status": StepStatus.SKIPPED,
                "plan": [f"Already at {said}: nothing to do."],
                "result": f"already at {said}",
            }
        )
    plan = await target.plan(found.name)
    step = step.model_copy(update={"plan": plan.steps, "warnings": plan.warnings})
    return await preflight_step(target, step)


async def run_step(
    target: Target, step: PlanStep, bad_commit: str | None, progress: Progress
) -> Outcome:
    """Run one step: a provider rollback, a named-commit revert or a state clear."""
    if isinstance(target, ClearsState):
        return await target.clear(progress)
    if bad_commit is not None and isinstance(target, RevertsCommits):
        return await target.revert(bad_commit, progress)
    if step.target is None:
        raise InvalidRequest(f"Step {step.name} has no target version.")
    return await target.rollback(step.target, progress)


def ran(step: PlanStep, outcome: Outcome) -> dict[str, object]:
    """Return a done step's fields that record what its platform runs, when not the target."""
    running = outcome.running
    if running is None:
        return {}
    said = running.shown()
    shown = step.shown_as | ({running.name: said} if said != running.name else {})
    return {"running": running.name, "shown_as": shown}


async def version_now(target: Target) -> str | None:
    """Return the version a step's target runs, or None for a state target (no versions)."""
    if isinstance(target, ClearsState):
        return None
    return await target.current_version()


async def describe(target: Target) -> str:
    """Say what a step's target holds now, without raising a second error."""
    try:
        return await target.describe_state()
    except ProviderError as exc:
        return f"unknown: the provider could not be asked ({exc.message})"
