"""Preflight of the railway provider against the fake Railway: identities, checks, changes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from providers.base import NotFound
from providers.capabilities import Describe, Preflight, PreflightReport, Verdict
from tests.support.railway import FakeRailway, RailwayFactory, commit_of


def _verdicts(report: PreflightReport) -> dict[str, Verdict]:
    return {check.name: check.verdict for check in report.checks}


def _why(report: PreflightReport, name: str) -> str:
    return next(check.why for check in report.checks if check.name == name)


def _statuses(railway: FakeRailway) -> dict[str, str]:
    return {d.id: d.status for d in railway.deployments}


async def test_a_way_back_passes_every_check_with_exact_identities(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    provider = make_railway()
    assert isinstance(provider, Preflight) and isinstance(provider, Describe)
    target, current = railway.by_tag("v1.2.3"), railway.by_tag("v1.2.4")
    before = _statuses(railway)

    report = await provider.preflight("v1.2.3")

    assert report.target.version == target.id
    assert report.target.exact == (
        f"{target.id} (commit {commit_of('v1.2.3')[:7]}, image ghcr.io/acme/api:v1.2.3)"
    )
    assert report.current is not None and report.current.version == current.id
    assert report.current.exact.startswith(f"{current.id} (commit {commit_of('v1.2.4')[:7]}")
    assert _verdicts(report) == {
        "service-found": Verdict.PASS,
        "deployment-redeployable": Verdict.PASS,
        "deploy-in-flight": Verdict.PASS,
    }
    assert "REMOVED" in _why(report, "deployment-redeployable")
    assert current.id in _why(report, "service-found")
    assert report.changes[:2] == [
        f"commit {commit_of('v1.2.4')[:7]} -> {commit_of('v1.2.3')[:7]} (main)",
        "image ghcr.io/acme/api:v1.2.4 -> ghcr.io/acme/api:v1.2.3",
    ]
    assert railway.count("deploymentRollback") == 0
    assert _statuses(railway) == before


async def test_identity_now_is_the_deployment_railway_serves_asked_again(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    provider = make_railway()
    before = await provider.identity_now()
    assert before == (await provider.preflight("v1.2.3")).current

    railway.by_tag("v1.2.4").status = "REMOVED"
    railway.add("v1.2.5", "SUCCESS", age=timedelta(minutes=5))
    after = await provider.identity_now()

    assert after.version == railway.by_tag("v1.2.5").id and after.exact != before.exact
    assert commit_of("v1.2.5")[:7] in after.exact
    assert railway.count("deploymentRollback") == 0


async def test_identity_now_raises_when_nothing_serves(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.by_tag("v1.2.4").status = "CRASHED"

    with pytest.raises(NotFound, match="Railway serves no deployment"):
        await make_railway().identity_now()


async def test_an_unknown_version_raises_as_plan_does(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    with pytest.raises(NotFound, match=r"No deployment `v9\.9\.9` among the last 5"):
        await make_railway().preflight("v9.9.9")


@pytest.mark.parametrize(
    ("tag", "said"),
    [
        ("v1.2.4-rc1", "FAILED"),  # a build that failed
        ("v1.1.0", "canRollback"),  # older than the plan's retention
        ("v1.2.4", "serves it now"),  # nothing to roll back to
    ],
)
async def test_what_railway_cannot_redeploy_fails(
    railway: FakeRailway, make_railway: RailwayFactory, tag: str, said: str
) -> None:
    report = await make_railway().preflight(railway.by_tag(tag).id)

    assert _verdicts(report)["deployment-redeployable"] == Verdict.FAIL
    assert said in _why(report, "deployment-redeployable")
    assert railway.count("deploymentRollback") == 0


async def test_a_crashed_deployment_fails_though_railway_would_take_it(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    crashed = railway.add("v1.2.3-hotfix", "CRASHED", age=timedelta(hours=3))

    report = await make_railway().preflight(crashed.id)

    assert _verdicts(report)["deployment-redeployable"] == Verdict.FAIL
    assert "CRASHED" in _why(report, "deployment-redeployable")


async def test_a_newer_deployment_on_its_way_warns(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    building = railway.add("v1.2.5", "BUILDING", age=timedelta(minutes=1))

    report = await make_railway().preflight("v1.2.3")

    assert _verdicts(report)["deploy-in-flight"] == Verdict.WARN
    assert building.id in _why(report, "deploy-in-flight")
    assert "BUILDING" in _why(report, "deploy-in-flight")


async def test_a_service_that_cannot_be_read_fails_closed(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    report = await make_railway(service_id="0a0a0a0a-missing").preflight("v1.2.3")

    assert _verdicts(report) == {"service-found": Verdict.FAIL}
    assert "Service not found" in _why(report, "service-found")
    assert report.current is None and report.target.version == "v1.2.3"

    railway.fail_graphql("Not Authorized", field="deployments")
    denied = await make_railway().preflight("v1.2.3")
    assert _verdicts(denied) == {"service-found": Verdict.FAIL}
    assert "Not Authorized" in _why(denied, "service-found")
    assert railway.token not in _why(denied, "service-found")


async def test_a_service_where_nothing_serves_warns(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.by_tag("v1.2.4").status = "CRASHED"

    report = await make_railway().preflight("v1.2.3")

    assert _verdicts(report)["service-found"] == Verdict.WARN
    assert report.current is None
    assert report.changes == []


async def test_changes_say_a_roll_forward_and_a_branch_change(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.by_tag("v1.2.4").status = "REMOVED"
    railway.by_tag("v1.2.3").status = "SUCCESS"
    later = railway.by_tag("v1.2.4")
    later.meta["branch"] = "release"

    report = await make_railway().preflight(later.id)

    assert report.changes[0] == (
        f"commit {commit_of('v1.2.3')[:7]} (main) -> {commit_of('v1.2.4')[:7]} (release)"
    )
    assert any("forward" in line for line in report.changes)
