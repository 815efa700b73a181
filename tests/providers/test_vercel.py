"""The vercel provider against a local fake of Vercel's REST API."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from providers.base import (
    AuthRejected,
    Conflicting,
    NotFound,
    ProviderError,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
)
from tests.support.vercel import FakeVercel, Make, Steps


def _url(vercel: FakeVercel, version: str) -> str:
    return f"https://{vercel.project.by_version(version).url}"


async def test_versions_are_ready_production_deployments_named_by_meta_version(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    project = vercel.project
    vercel.add_deployment(project, {"version": "1.2.5"}, target=None)  # a preview
    vercel.add_deployment(project, {"version": "1.2.6"}, state="ERROR")
    project.production = project.by_version("1.2.4").uid

    versions = await make_vercel().list_versions()

    assert [v.name for v in versions] == ["v1.2.4", "v1.2.3", "v1.2.2"]
    current, previous, oldest = versions
    assert current.current and not current.previous_stable
    assert previous.previous_stable and not previous.current
    assert not oldest.current and not oldest.previous_stable
    assert _url(vercel, "1.2.3") in previous.detail
    assert project.by_version("1.2.3").uid in previous.detail
    assert current.created_at is not None and previous.created_at is not None
    assert current.created_at > previous.created_at
    # `/rollback frontend 1.2.3`, the uid and the url all name the same deployment.
    uid = project.by_version("1.2.3").uid
    host = project.by_version("1.2.3").url
    assert all(previous.answers_to(name) for name in ("1.2.3", uid, host))
    listed = vercel.routed("deployments")[-1]
    assert listed.query["target"] == "production" and listed.query["state"] == "READY"
    assert listed.query["teamId"] == vercel.team_id
    assert listed.authorization == f"Bearer {vercel.token}"
    assert vercel.routed("project")[-1].query["rollbackInfo"] == "true"


async def test_deployments_without_a_usable_meta_version_are_named_by_uid(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    project = vercel.project
    bare = vercel.add_deployment(project, {"githubCommitSha": "de8b89f"})
    odd = vercel.add_deployment(project, {"version": "2.0 beta"})  # no chat can type it
    redeploy = vercel.add_deployment(project, {"version": "v1.2.3"})  # same release again

    versions = {v.name: v for v in await make_vercel().list_versions()}

    assert bare.uid in versions and odd.uid in versions
    # The newest deployment of a release takes its name; the older one keeps its uid.
    assert redeploy.uid in versions["v1.2.3"].detail
    older = next(d for d in project.deployments if d.version == "1.2.3")
    assert older.uid in versions
    # Messages say one named by its uid as people know it, the uid beside.
    assert versions[older.uid].shown() == f"v1.2.3 (deployment {older.uid})"
    assert versions[bare.uid].shown() == f"de8b89f (deployment {bare.uid})"
    assert versions[odd.uid].shown() == odd.uid
    assert versions["v1.2.3"].shown() == "v1.2.3"


async def test_current_is_what_the_project_serves_not_the_newest(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.project.production = vercel.project.by_version("1.2.3").uid  # rolled back earlier
    provider = make_vercel()

    assert await provider.current_version() == "v1.2.3"
    marked = {v.name: (v.current, v.previous_stable) for v in await provider.list_versions()}
    assert marked == {
        "v1.2.4": (False, False),
        "v1.2.3": (True, False),
        "v1.2.2": (False, True),
    }
    assert await provider.describe_state() == (
        f"Vercel project `frontend`: production serves {_url(vercel, '1.2.3')} (v1.2.3)"
    )


async def test_production_older_than_the_listed_page_still_counts(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.project.production = vercel.project.by_version("1.2.2").uid
    versions = await make_vercel(history=1).list_versions()
    assert [(v.name, v.current) for v in versions] == [("v1.2.4", False), ("v1.2.2", True)]


@pytest.mark.parametrize("typed", ["v1.2.3", "1.2.3"])
async def test_plan_names_the_deployment_and_the_endpoint(
    vercel: FakeVercel, make_vercel: Make, typed: str
) -> None:
    target = vercel.project.by_version("1.2.3")
    plan = await make_vercel().plan(typed)

    text = "\n".join(plan.steps)
    assert f"https://{target.url}" in text and "(v1.2.3" in text
    assert f"POST /v1/projects/{vercel.project.id}/rollback/{target.uid}" in text
    assert _url(vercel, "1.2.4") in text  # what it serves now
    assert "never retried" in text
    assert plan.warnings == []
    assert vercel.routed("rollback") == []


async def test_plan_in_promote_mode_names_the_promote_endpoint(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    target = vercel.project.by_version("1.2.3")
    plan = await make_vercel(mode="promote").plan("v1.2.3")
    assert f"POST /v10/projects/{vercel.project.id}/promote/{target.uid}" in "\n".join(plan.steps)


async def test_plan_warns_about_a_running_job(vercel: FakeVercel, make_vercel: Make) -> None:
    vercel.job_outcome = "never"
    provider = make_vercel(promote_timeout_seconds=0.2)
    with pytest.raises(TimedOut):
        await provider.rollback("v1.2.3", Steps())

    plan = await provider.plan("v1.2.2")
    joined = " ".join(plan.warnings)
    # The job is pending, or in progress once the fake's clock has moved on.
    assert re.search(r"still running a rollback of this project \((pending|in-progress)\)", joined)


async def test_plan_of_an_unknown_version_lists_what_exists(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    with pytest.raises(NotFound) as caught:
        await make_vercel().plan("v9.9.9")
    assert "v9.9.9" in caught.value.message
    assert "v1.2.4, v1.2.3, v1.2.2" in caught.value.message


async def test_rollback_moves_production_and_waits_for_the_alias_job(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    target = vercel.project.by_version("1.2.3")
    provider = make_vercel()
    steps = Steps()

    outcome = await provider.rollback("1.2.3", steps)

    assert vercel.serving().uid == target.uid
    assert f"https://{target.url}" in outcome.summary and "(v1.2.3)" in outcome.summary
    assert any("vercel promote" in note for note in outcome.notes)
    (call,) = vercel.routed("rollback")
    assert call.path == f"/v1/projects/{vercel.project.id}/rollback/{target.uid}"
    assert call.query["teamId"] == vercel.team_id
    assert call.authorization == f"Bearer {vercel.token}"
    told = "\n".join(steps.lines)
    assert f"POST {call.path}" in told
    assert "(rollback): pending" in told or "(rollback): in-progress" in told
    assert "(rollback): succeeded" in told
    assert await provider.current_version() == "v1.2.3"
    assert "serves " + f"https://{target.url} (v1.2.3)" in await provider.describe_state()


async def test_rollback_in_promote_mode_uses_the_promote_endpoint(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    target = vercel.project.by_version("1.2.2")
    await make_vercel(mode="promote").rollback("v1.2.2", Steps())
    assert vercel.serving().uid == target.uid
    assert [c.path for c in vercel.routed("promote")] == [
        f"/v10/projects/{vercel.project.id}/promote/{target.uid}"
    ]
    assert vercel.routed("rollback") == []


async def test_a_failed_alias_job_says_what_production_serves(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.job_outcome = "failed"
    with pytest.raises(RollbackFailed) as caught:
        await make_vercel().rollback("v1.2.3", Steps())
    assert "ended `failed`" in caught.value.message
    assert caught.value.target_state == (
        f"Vercel project `frontend`: production serves {_url(vercel, '1.2.4')} (v1.2.4)"
    )
    assert vercel.serving().version == "1.2.4"


async def test_a_job_that_never_finishes_times_out_at_the_deadline(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.job_outcome = "never"
    started = time.monotonic()
    with pytest.raises(TimedOut) as caught:
        await make_vercel(promote_timeout_seconds=0.8).rollback("v1.2.3", Steps())
    assert 0.6 < time.monotonic() - started < 3
    assert "did not finish within 0.8 s" in caught.value.message
    assert "in-progress" in caught.value.message
    state = caught.value.target_state or ""
    assert f"serves {_url(vercel, '1.2.4')} (v1.2.4)" in state
    assert f"a rollback to {_url(vercel, '1.2.3')} (v1.2.3) is in-progress" in state


async def test_the_mutation_is_not_retried_on_5xx(vercel: FakeVercel, make_vercel: Make) -> None:
    vercel.fail("rollback", 503)
    with pytest.raises(Transient) as caught:
        await make_vercel().rollback("v1.2.3", Steps())
    assert len(vercel.routed("rollback")) == 1
    assert "HTTP 503" in caught.value.message and "was not sent again" in caught.value.message
    assert "An unexpected internal error occurred" in caught.value.message
    assert f"serves {_url(vercel, '1.2.4')} (v1.2.4)" in (caught.value.target_state or "")
    assert vercel.serving().version == "1.2.4"


async def test_an_unanswered_mutation_is_not_resent(vercel: FakeVercel, make_vercel: Make) -> None:
    vercel.slow("rollback", 1.0)
    with pytest.raises(TimedOut) as caught:
        await make_vercel(request_timeout_seconds=0.3).rollback("v1.2.3", Steps())
    assert len(vercel.routed("rollback")) == 1
    assert "(v1.2.4)" in (caught.value.target_state or "")


async def test_a_lost_answer_to_an_applied_mutation_is_followed_not_resent(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.lose_answers = 502  # Vercel started the job, the answer got lost on the way
    await make_vercel().rollback("v1.2.3", Steps())
    assert len(vercel.routed("rollback")) == 1
    assert vercel.serving().version == "1.2.3"


async def test_a_rollback_already_in_progress_is_a_conflict(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.fail(
        "rollback",
        409,
        code="conflict",
        message="A rollback or promotion is already in progress for this project",
    )
    with pytest.raises(Conflicting) as caught:
        await make_vercel().rollback("v1.2.3", Steps())
    assert "conflict (HTTP 409)" in caught.value.message
    assert "already in progress" in caught.value.message
    assert caught.value.target_state and "(v1.2.4)" in caught.value.target_state
    assert len(vercel.routed("rollback")) == 1


async def test_rolling_back_to_what_production_serves_is_refused(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    with pytest.raises(Refused) as caught:
        await make_vercel().rollback("v1.2.4", Steps())
    assert "already serves" in caught.value.message
    assert vercel.routed("rollback") == []


async def test_reads_wait_out_a_429_as_retry_after_asks(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.rate_limit("project", retry_after=1)
    started = time.monotonic()
    versions = await make_vercel().list_versions()
    assert time.monotonic() - started >= 1.0
    assert versions[0].name == "v1.2.4"
    assert len(vercel.routed("project")) == 2


async def test_without_retry_after_x_ratelimit_reset_is_honoured(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.rate_limit("deployments", retry_after=None, reset_in=2)  # in 1 to 2 s
    started = time.monotonic()
    await make_vercel().list_versions()
    assert time.monotonic() - started >= 1.0
    assert len(vercel.routed("deployments")) == 2


async def test_reads_are_retried_after_5xx(vercel: FakeVercel, make_vercel: Make) -> None:
    vercel.fail("deployments", 502, times=2)
    assert await make_vercel().current_version() == "v1.2.4"
    assert len(vercel.routed("deployments")) == 3


async def test_reads_give_up_after_repeated_5xx(vercel: FakeVercel, make_vercel: Make) -> None:
    vercel.fail("project", 500, times=10)
    with pytest.raises(Transient) as caught:
        await make_vercel().list_versions()
    assert "the service failed (HTTP 500)" in caught.value.message
    assert "internal_server_error" in caught.value.message
    assert len(vercel.routed("project")) == 4


async def test_a_slow_api_times_out(vercel: FakeVercel, make_vercel: Make) -> None:
    vercel.slow("project", 3.0)
    started = time.monotonic()
    with pytest.raises(TimedOut) as caught:
        await make_vercel(request_timeout_seconds=0.3).list_versions()
    assert time.monotonic() - started < 10
    assert "no answer in time" in caught.value.message
    assert len(vercel.routed("project")) == 4  # a read: retried with backoff, then given up


@pytest.mark.parametrize(
    ("status", "expected", "text"),
    [
        (403, AuthRejected, "the token was rejected (HTTP 403): Not authorized (forbidden)"),
        (401, AuthRejected, "the token was rejected (HTTP 401): Not authorized (forbidden)"),
    ],
)
async def test_a_rejected_token_is_a_clear_auth_error(
    vercel: FakeVercel,
    make_vercel: Make,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    expected: type[ProviderError],
    text: str,
) -> None:
    vercel.bad_token_status = status
    wrong = f"wrong-{vercel.token}"
    monkeypatch.setenv("VERCEL_TOKEN", wrong)
    with pytest.raises(expected) as caught:
        await make_vercel().list_versions()
    assert text in caught.value.message
    assert "Check the token in VERCEL_TOKEN" in caught.value.message
    _assert_no_secret(caught.value, wrong)
    assert len(vercel.routed("project")) == 1  # never retried


async def test_a_missing_token_is_named_before_any_call(
    vercel: FakeVercel, make_vercel: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VERCEL_TOKEN")
    with pytest.raises(AuthRejected) as caught:
        await make_vercel().list_versions()
    assert "VERCEL_TOKEN holds no token" in caught.value.message
    assert vercel.calls == []


@pytest.mark.parametrize(
    ("overrides", "expected", "text"),
    [
        ({"project": "no-such-project"}, NotFound, "not found (HTTP 404): Project not found"),
        ({"team_id": None}, NotFound, "not found (HTTP 404): Project not found"),
        ({"team_id": "team_other"}, AuthRejected, "permission to access this team"),
    ],
)
async def test_scope_errors_are_typed_with_vercels_message(
    vercel: FakeVercel,
    make_vercel: Make,
    overrides: dict[str, Any],
    expected: type[ProviderError],
    text: str,
) -> None:
    with pytest.raises(expected) as caught:
        await make_vercel(**overrides).current_version()
    assert text in caught.value.message


async def test_a_bad_request_is_refused_with_vercels_message(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.fail("rollback", 400, message="The deployment is not eligible for Instant Rollback")
    with pytest.raises(Refused) as caught:
        await make_vercel().rollback("v1.2.2", Steps())
    assert type(caught.value) is Refused
    assert "refused (HTTP 400): The deployment is not eligible for Instant Rollback" in (
        caught.value.message
    )
    assert vercel.serving().version == "1.2.4"


async def test_the_token_never_reaches_error_text(vercel: FakeVercel, make_vercel: Make) -> None:
    # A server that echoes the request's credentials back in its error message.
    vercel.fail("rollback", 400, message=f"Bad header: Bearer {vercel.token}")
    with pytest.raises(Refused) as caught:
        await make_vercel().rollback("v1.2.3", Steps())
    assert "Bad header: Bearer [redacted]" in caught.value.message
    _assert_no_secret(caught.value, vercel.token)


def _assert_no_secret(error: BaseException, secret: str) -> None:
    """Check the error, its state and its causes for the secret."""
    seen: BaseException | None = error
    while seen is not None:
        texts = [str(seen), repr(seen), str(getattr(seen, "target_state", ""))]
        assert all(secret not in text for text in texts), texts
        seen = seen.__cause__ or seen.__context__
