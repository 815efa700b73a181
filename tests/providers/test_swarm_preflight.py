"""Preflight and Describe of the docker_swarm provider, on a real single-node swarm."""

from __future__ import annotations

from providers.capabilities import PreflightReport, Verdict
from tests.support.swarm import (
    FAST_UPDATES,
    MISSING_IMAGE,
    Swarm,
    SwarmProviderFactory,
    wait_update,
)

SECRET = "hunter2-not-for-slack"
SLOW = 120_000_000_000  # two minutes, in nanoseconds
SERVE = ["/bin/sh", "-c", "exec httpd -f -p $PORT -h /www"]


def verdicts(report: PreflightReport) -> dict[str, str]:
    return {c.name: str(c.verdict) for c in report.checks}


async def test_preflight_names_exact_images_and_what_the_previous_spec_changes(
    swarm: Swarm, make_swarm_provider: SwarmProviderFactory
) -> None:
    service = await swarm.create("v1.2.3", env={"API_TOKEN": SECRET})
    await swarm.update(
        service,
        "v1.2.4",
        Env=[f"PORT={service.port}", f"DB_PASSWORD={SECRET}"],
        Command=SERVE,
    )
    provider = make_swarm_provider(service.name)
    before = (await swarm.docker.services.inspect(service.name))["Version"]["Index"]

    report = await provider.preflight("v1.2.3")

    assert report.current is not None
    assert report.current.version == "v1.2.4" and report.target.version == "v1.2.3"
    assert report.current.exact.startswith("sha256:")
    assert report.current.exact.endswith(f"(from {swarm.image('v1.2.4')})")
    assert report.target.exact.endswith(f"(from {swarm.image('v1.2.3')})")
    assert report.current.exact != report.target.exact
    assert verdicts(report) == {
        "swarm-manager": Verdict.PASS,
        "update-idle": Verdict.PASS,
        "image-present": Verdict.PASS,
    }
    checks = {c.name: c.why for c in report.checks}
    assert f"{swarm.image('v1.2.3')} is on this node" in checks["image-present"]
    assert "last update: completed" in checks["update-idle"]
    assert report.changes == [
        f"image: {swarm.image('v1.2.4')} -> {swarm.image('v1.2.3')}",
        "env names added: API_TOKEN; removed: DB_PASSWORD",
        "command: /bin/sh -c 'exec httpd -f -p $PORT -h /www' -> the image's default",
    ]
    shown = repr(report)
    assert SECRET not in shown
    assert await provider.identity_now() == report.current
    after = (await swarm.docker.services.inspect(service.name))["Version"]["Index"]
    assert after == before  # a preflight changes nothing


async def test_preflight_fails_while_an_update_runs_and_warns_when_it_paused(
    swarm: Swarm, make_swarm_provider: SwarmProviderFactory
) -> None:
    service = await swarm.create("v1.2.3")
    await swarm.update(service, "v1.2.4")
    provider = make_swarm_provider(service.name)
    # Swarm watches each new task for UpdateConfig.Monitor before it calls the update done.
    await swarm.update_spec(service, "v1.2.2", {"UpdateConfig": {**FAST_UPDATES, "Monitor": SLOW}})

    during = await provider.preflight("v1.2.4")
    assert verdicts(during)["update-idle"] == Verdict.FAIL
    idle = next(c for c in during.checks if c.name == "update-idle")
    assert "(updating (update in progress))" in idle.why
    assert "a rollback now would replace it" in idle.why

    # A new task that can never start makes Swarm pause the next update.
    await swarm.update_spec(service, MISSING_IMAGE, {"UpdateConfig": FAST_UPDATES})
    await wait_update(swarm.docker, service.name, {"paused"}, 60)
    paused = await provider.preflight("v1.2.2")
    idle = next(c for c in paused.checks if c.name == "update-idle")
    assert idle.verdict == Verdict.WARN and "paused" in idle.why
    assert "the rollback replaces it" in idle.why
    assert verdicts(paused)["image-present"] == Verdict.PASS
    assert paused.changes[0] == f"image: {MISSING_IMAGE} -> {swarm.image('v1.2.2')}"
