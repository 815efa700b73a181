"""The docker_swarm provider against a real single-node swarm on the test engine."""

from __future__ import annotations

import pytest

from providers.base import Conflicting, NotFound, Refused, RollbackFailed
from tests.support.docker import wait_http
from tests.support.swarm import (
    FAST_UPDATES,
    MISSING_IMAGE,
    Swarm,
    SwarmProviderFactory,
    SwarmService,
    running_images,
    wait_update,
)


async def deployed(swarm: Swarm) -> SwarmService:
    """v1.2.2, then updated to v1.2.3, then to v1.2.4, as a team's deploys would."""
    service = await swarm.create("v1.2.2")
    await swarm.update(service, "v1.2.3")
    await swarm.update(service, "v1.2.4", Env=[f"PORT={service.port}", "FEATURE_X=on"])
    return service


async def test_rollback_to_previous_restores_the_previous_spec(
    swarm: Swarm, make_swarm_provider: SwarmProviderFactory
) -> None:
    service = await deployed(swarm)
    provider = make_swarm_provider(service.name)
    heard: list[str] = []

    async def progress(text: str) -> None:
        heard.append(text)

    versions = await provider.list_versions()
    assert [(v.name, v.current, v.previous_stable) for v in versions] == [
        ("v1.2.4", True, False),
        ("v1.2.3", False, True),
    ]
    assert await provider.current_version() == "v1.2.4"

    outcome = await provider.rollback("v1.2.3", progress)

    image = swarm.image("v1.2.3")
    assert await running_images(swarm.docker, service.name) == [image]
    assert '"version":"v1.2.3"' in await wait_http(f"{service.url}/health")
    assert outcome.summary.startswith(f"`{service.name}` now runs {image}: 1 task(s) running")
    assert "rollback completed" in outcome.summary
    assert any("spec version" in line for line in heard)
    assert any(f"Tasks on {image}: 1 running" in line for line in heard)
    # The whole previous spec came back: its env had no FEATURE_X.
    spec = (await swarm.docker.services.inspect(service.name))["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Env"] == [f"PORT={service.port}"]
    assert await provider.current_version() == "v1.2.3"
    state = await provider.describe_state()
    assert f"is set to {image}" in state and "1 task(s) running it of 1 desired" in state
    assert "rollback_completed" in state


async def test_plan_says_what_swarm_does_and_changes_nothing(
    swarm: Swarm, make_swarm_provider: SwarmProviderFactory
) -> None:
    service = await deployed(swarm)
    provider = make_swarm_provider(service.name)
    before = (await swarm.docker.services.inspect(service.name))["Version"]["Index"]

    plan = await provider.plan("previous")

    text = "\n".join(plan.steps)
    assert f"POST /services/{service.name}/update?version={before}&rollback=previous" in text
    assert swarm.image("v1.2.3") in text and swarm.image("v1.2.4") in text
    assert "on failure: pause" in text and "rollback_completed" in text
    assert any(
        f"`docker service rollback {service.name}` brings v1.2.4 back" in w for w in plan.warnings
    )
    after = (await swarm.docker.services.inspect(service.name))["Version"]["Index"]
    assert after == before


async def test_only_the_previous_spec_is_a_target(
    swarm: Swarm, make_swarm_provider: SwarmProviderFactory
) -> None:
    service = await deployed(swarm)
    provider = make_swarm_provider(service.name)

    with pytest.raises(NotFound) as older:
        await provider.plan("v1.2.2")
    assert "can go back to v1.2.3" in older.value.message and "`v1.2.2`" in older.value.message
    with pytest.raises(Refused) as same:
        await provider.plan("v1.2.4")
    assert "already runs" in same.value.message


async def test_a_service_never_updated_has_nothing_to_roll_back_to(
    swarm: Swarm, make_swarm_provider: SwarmProviderFactory
) -> None:
    service = await swarm.create("v1.2.2")
    provider = make_swarm_provider(service.name)

    assert [v.name for v in await provider.list_versions()] == ["v1.2.2"]
    with pytest.raises(Refused) as refused:
        await provider.plan("previous")
    assert "keeps no previous spec" in refused.value.message


async def test_a_change_between_read_and_write_is_refused(
    swarm: Swarm, make_swarm_provider: SwarmProviderFactory
) -> None:
    service = await deployed(swarm)
    provider = make_swarm_provider(service.name)

    async def someone_deploys_meanwhile(text: str) -> None:
        # The first word the provider says comes after its read and before its write.
        if "asking Swarm to roll back" in text:
            await swarm.update_spec(service, "v1.2.4", Env=[f"PORT={service.port}", "Y=1"])

    with pytest.raises(Conflicting) as conflict:
        await provider.rollback("v1.2.3", someone_deploys_meanwhile)

    assert "changed since rollbot read it" in conflict.value.message
    assert "update out of sequence" in conflict.value.message
    assert "nothing was overwritten" in conflict.value.message
    await wait_update(swarm.docker, service.name, {"completed"}, 60)
    spec = (await swarm.docker.services.inspect(service.name))["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == swarm.image("v1.2.4")
    assert "Y=1" in spec["TaskTemplate"]["ContainerSpec"]["Env"]  # the other change stays


async def test_an_update_in_progress_is_refused(
    swarm: Swarm, make_swarm_provider: SwarmProviderFactory
) -> None:
    service = await deployed(swarm)
    provider = make_swarm_provider(service.name)
    # Swarm watches each new task for UpdateConfig.Monitor before it calls the update done.
    slow = {"UpdateConfig": {**FAST_UPDATES, "Monitor": 120_000_000_000}}
    await swarm.update_spec(service, "v1.2.3", slow)
    # Swarm's orchestrator sets UpdateStatus a moment after the spec changes.
    current = await wait_update(swarm.docker, service.name, {"updating"}, 30)
    assert current["UpdateStatus"]["State"] == "updating"

    with pytest.raises(Conflicting) as busy:
        await provider.rollback("previous", _ignore)

    assert "carrying out an update" in busy.value.message and "updating" in busy.value.message
    after = await swarm.docker.services.inspect(service.name)
    assert after["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == swarm.image("v1.2.3")
    assert after["UpdateStatus"]["State"] == "updating"  # Swarm's update goes on


async def test_a_previous_image_that_cannot_be_pulled_fails_with_dockers_message(
    swarm: Swarm, make_swarm_provider: SwarmProviderFactory
) -> None:
    service = await swarm.create(MISSING_IMAGE, wait=False)
    await swarm.update(service, "v1.2.4")
    provider = make_swarm_provider(service.name)

    report = await provider.preflight("previous")
    image_check = next(c for c in report.checks if c.name == "image-present")
    assert image_check.verdict == "fail"
    assert "is not on this node" in image_check.why and "127.0.0.1:1" in image_check.why

    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback("previous", _ignore)

    message = failed.value.message
    assert "Swarm paused the rollback" in message
    assert f"No such image: {MISSING_IMAGE}" in message and "rejected" in message
    assert f"stays set to {MISSING_IMAGE} with 0 task(s) running it" in message
    assert failed.value.target_state is not None
    assert "rollback_paused" in failed.value.target_state


async def _ignore(text: str) -> None:
    return None


async def test_a_missing_service_is_named(
    swarm_manager: str, make_swarm_provider: SwarmProviderFactory
) -> None:
    provider = make_swarm_provider("rbswarm-no-such-service")

    with pytest.raises(NotFound) as missing:
        await provider.list_versions()

    assert missing.value.message.startswith("No swarm service `rbswarm-no-such-service`")
