"""Preflight of the vercel provider against the fake Vercel: identities, checks, changes."""

from __future__ import annotations

import pytest

from providers.base import NotFound
from providers.capabilities import Describe, Preflight, PreflightReport, Verdict
from tests.support.vercel import FakeVercel, Make, commit_of, git_meta


def _verdicts(report: PreflightReport) -> dict[str, Verdict]:
    return {check.name: check.verdict for check in report.checks}


def _why(report: PreflightReport, name: str) -> str:
    return next(check.why for check in report.checks if check.name == name)


def _only_reads(vercel: FakeVercel) -> None:
    assert vercel.calls and all(call.method == "GET" for call in vercel.calls)


async def test_a_way_back_passes_every_check_with_exact_identities(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    provider = make_vercel()
    assert isinstance(provider, Preflight) and isinstance(provider, Describe)
    target, current = vercel.project.by_version("1.2.3"), vercel.project.by_version("1.2.4")

    report = await provider.preflight("1.2.3")

    assert report.target.version == "v1.2.3"
    assert report.target.exact == f"{target.uid} (commit {commit_of('1.2.3')[:7]})"
    assert report.current is not None
    assert report.current.version == "v1.2.4"
    assert report.current.exact == f"{current.uid} (commit {commit_of('1.2.4')[:7]})"
    assert _verdicts(report) == {
        "deployment-ready": Verdict.PASS,
        "rollback-candidate": Verdict.PASS,
        "rolling-release": Verdict.PASS,
        "alias-job": Verdict.PASS,
    }
    assert "READY" in _why(report, "deployment-ready")
    assert "isRollbackCandidate" in _why(report, "rollback-candidate")
    assert report.changes == [f"commit {commit_of('1.2.4')[:7]} -> {commit_of('1.2.3')[:7]} (main)"]
    assert all("\n" not in check.why for check in report.checks)
    _only_reads(vercel)
    assert vercel.serving().uid == current.uid


async def test_identity_now_is_what_production_serves_asked_again(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    provider = make_vercel()
    before = await provider.identity_now()
    assert before == (await provider.preflight("v1.2.3")).current

    vercel.project.production = vercel.project.by_version("1.2.2").uid  # someone rolled back
    after = await provider.identity_now()

    assert after.version == "v1.2.2" and after.exact != before.exact
    assert after.exact.startswith(vercel.project.by_version("1.2.2").uid)
    _only_reads(vercel)


async def test_identity_now_names_the_canary_of_a_rolling_release(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    provider = make_vercel()
    before = await provider.identity_now()

    canary = vercel.start_rolling_release("1.2.5", percent=10)

    after = await provider.identity_now()
    assert after.version == before.version and after.exact != before.exact
    assert canary.uid in after.exact


async def test_an_unknown_version_raises_as_plan_does(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    with pytest.raises(NotFound, match=r"`v9\.9\.9`"):
        await make_vercel().preflight("v9.9.9")


async def test_a_deployment_that_is_not_ready_fails(vercel: FakeVercel, make_vercel: Make) -> None:
    project = vercel.project
    canceled = vercel.add_deployment(project, git_meta("1.2.7"), state="CANCELED")
    building = vercel.add_deployment(project, git_meta("1.2.8"), state="BUILDING")
    provider = make_vercel()

    for deployment, state in ((canceled, "CANCELED"), (building, "BUILDING")):
        report = await provider.preflight(deployment.uid)
        assert report.target.exact.startswith(deployment.uid)
        assert _verdicts(report)["deployment-ready"] == Verdict.FAIL
        assert state in _why(report, "deployment-ready")
        assert _verdicts(report)["rollback-candidate"] == Verdict.FAIL
    # Named by its release version too, though Vercel never listed it as READY.
    assert _verdicts(await provider.preflight("1.2.7"))["deployment-ready"] == Verdict.FAIL
    _only_reads(vercel)


async def test_what_never_served_production_is_no_rollback_candidate(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    project = vercel.project
    vercel.add_deployment(project, git_meta("1.2.5"), substate="STAGED")
    preview = vercel.add_deployment(project, git_meta("1.2.6", "feature-x"), target=None)
    provider = make_vercel()

    staged = await provider.preflight("1.2.5")
    assert _verdicts(staged)["deployment-ready"] == Verdict.PASS
    assert _verdicts(staged)["rollback-candidate"] == Verdict.FAIL
    assert "STAGED" in _why(staged, "rollback-candidate")

    previewed = await provider.preflight(preview.uid)
    assert _verdicts(previewed)["rollback-candidate"] == Verdict.FAIL
    assert "preview" in _why(previewed, "rollback-candidate")
    assert previewed.changes[0] == (
        f"commit {commit_of('1.2.4')[:7]} (main) -> {commit_of('1.2.6')[:7]} (feature-x)"
    )
    _only_reads(vercel)


async def test_instant_rollback_needs_a_candidate_promote_does_not(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.project.by_version("1.2.2").rollback_candidate = False

    rollback = await make_vercel().preflight("1.2.2")
    assert _verdicts(rollback)["rollback-candidate"] == Verdict.FAIL
    assert "isRollbackCandidate false" in _why(rollback, "rollback-candidate")

    promote = await make_vercel(mode="promote").preflight("1.2.2")
    assert _verdicts(promote)["rollback-candidate"] == Verdict.PASS


async def test_what_production_serves_already_is_no_way_back(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    report = await make_vercel().preflight("1.2.4")

    assert _verdicts(report)["rollback-candidate"] == Verdict.FAIL
    assert "serves it already" in _why(report, "rollback-candidate")
    assert report.changes == []


async def test_a_rolling_release_warns_for_its_base_and_fails_for_anything_else(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    canary = vercel.start_rolling_release("1.2.5", percent=10)
    provider = make_vercel()

    base = await provider.preflight("1.2.4")
    assert _verdicts(base)["rolling-release"] == Verdict.WARN
    assert _verdicts(base)["rollback-candidate"] == Verdict.PASS
    assert "aborts it" in _why(base, "rolling-release") and canary.url in _why(
        base, "rolling-release"
    )

    past = await provider.preflight("1.2.3")
    assert _verdicts(past)["rolling-release"] == Verdict.FAIL
    assert "10% of traffic" in _why(past, "rolling-release")
    assert vercel.project.rolling is not None and vercel.project.rolling.state == "ACTIVE"
    _only_reads(vercel)


async def test_a_rolling_release_that_cannot_be_read_fails_closed(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.fail("rolling", 403, times=10)

    report = await make_vercel().preflight("1.2.3")

    assert _verdicts(report)["rolling-release"] == Verdict.FAIL
    assert "could not be read" in _why(report, "rolling-release")
    assert vercel.token not in _why(report, "rolling-release")


async def test_an_alias_job_in_flight_warns(vercel: FakeVercel, make_vercel: Make) -> None:
    project = vercel.project
    project.start_job(project.by_version("1.2.2"), "rollback", 60, "never")

    report = await make_vercel().preflight("1.2.3")

    assert _verdicts(report)["alias-job"] == Verdict.WARN
    assert "rollback" in _why(report, "alias-job")


async def test_changes_say_a_redeploy_of_the_same_commit_and_a_roll_forward(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    project = vercel.project
    project.production = project.by_version("1.2.3").uid
    again = vercel.add_deployment(project, {**git_meta("1.2.3"), "version": "1.2.3-redeploy"})
    provider = make_vercel()

    same = await provider.preflight(again.uid)
    assert same.changes[0] == f"commit {commit_of('1.2.3')[:7]} unchanged (main)"
    assert any("forward" in line for line in same.changes)

    bare = vercel.add_deployment(project, {"version": "1.2.1"})
    assert (await provider.preflight(bare.uid)).changes[0] == (
        f"commit {commit_of('1.2.3')[:7]} (main) -> unknown"
    )
