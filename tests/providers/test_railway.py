"""The railway provider against a local fake of Railway's GraphQL API (no mocks)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from providers.base import (
    AuthRejected,
    Conflicting,
    NotFound,
    ProviderError,
    RateLimited,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
)
from tests.support.railway import (
    CRASHES,
    NEVER_READY,
    SUCCEEDS,
    FakeRailway,
    RailwayFactory,
    commit_of,
)


class Progress:
    """Collects the progress lines a rollback reports."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, text: str) -> None:
        self.lines.append(text)


async def test_versions_are_deployments_newest_first_with_marks_and_aliases(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    provider = make_railway()
    current, previous = railway.by_tag("v1.2.4"), railway.by_tag("v1.2.3")

    versions = await provider.list_versions()

    assert [v.name for v in versions] == [
        railway.by_tag(tag).id for tag in ("v1.2.4", "v1.2.4-rc1", "v1.2.3", "v1.2.2", "v1.1.0")
    ]
    assert [v.name for v in versions if v.current] == [current.id]
    # The FAILED build in between is skipped; REMOVED is how Railway shows a superseded one.
    assert [v.name for v in versions if v.previous_stable] == [previous.id]
    assert await provider.current_version() == current.id
    first = versions.index(next(v for v in versions if v.name == previous.id))
    assert versions[first].aliases == (commit_of("v1.2.3")[:7], "v1.2.3")
    assert versions[first].answers_to("v1.2.3") and versions[first].answers_to(previous.id)
    assert versions[first].detail.startswith("REMOVED, created ")
    assert "commit " + commit_of("v1.2.3")[:7] + " “Fix login”" in versions[first].detail
    old = next(v for v in versions if v.name == railway.by_tag("v1.1.0").id)
    assert "canRollback: false" in old.detail
    # Messages say a deployment by its image tag, or by what the user typed, the id beside.
    assert versions[first].shown() == f"v1.2.3 (deployment {previous.id})"
    short = commit_of("v1.2.3")[:7]
    assert versions[first].shown(short) == f"{short} (deployment {previous.id})"
    assert versions[first].shown(previous.id) == f"v1.2.3 (deployment {previous.id})"


async def test_a_deployment_without_an_image_tag_is_shown_by_its_short_commit(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    built = railway.add("v1.2.5", "SUCCESS", age=timedelta(0))
    built.meta.pop("image")

    (newest, *_) = await make_railway().list_versions()

    assert newest.name == built.id
    assert newest.shown() == f"{commit_of('v1.2.5')[:7]} (deployment {built.id})"


async def test_describe_state_says_which_deployment_railway_serves(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    current = railway.by_tag("v1.2.4")

    state = await make_railway().describe_state()

    assert state.startswith(f"Railway serves deployment {current.id} (SUCCESS, created ")
    assert f"commit {commit_of('v1.2.4')[:7]} “Add export button”" in state
    assert "image ghcr.io/acme/api:v1.2.4" in state


async def test_plan_names_the_call_and_accepts_id_short_sha_or_tag(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    provider = make_railway(deploy_timeout_seconds=300)
    target = railway.by_tag("v1.2.3")

    plans = [await provider.plan(name) for name in (target.id, commit_of("v1.2.3")[:7], "v1.2.3")]

    assert all(plan == plans[0] for plan in plans)
    (step,) = plans[0].steps
    assert step.startswith(f"Call deploymentRollback({target.id}) (created ")
    assert f"commit {commit_of('v1.2.3')[:7]} “Fix login”" in step
    assert step.endswith("then wait up to 300 s for the new deployment to reach SUCCESS.")
    assert "custom variables" in plans[0].warnings[0]
    assert railway.count("deploymentRollback") == 0  # a plan changes nothing


async def test_plan_refuses_what_railway_cannot_or_need_not_roll_back_to(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    provider = make_railway()
    old = railway.by_tag("v1.1.0")

    with pytest.raises(Refused, match=f"rolling back to deployment {old.id} .*canRollback"):
        await provider.plan(old.id)
    with pytest.raises(Refused, match="canRollback is false"):
        await provider.plan("v1.2.4-rc1")
    with pytest.raises(Refused, match="which Railway serves now"):
        await provider.plan("v1.2.4")
    with pytest.raises(NotFound, match=r"No deployment `v9\.9\.9` among the last 5"):
        await provider.plan("v9.9.9")

    railway.add("v1.2.2", "REMOVED", age=timedelta(hours=3))
    with pytest.raises(Refused, match="fits several Railway deployments"):
        await provider.plan("v1.2.2")
    assert all(v.name != "v1.2.2" for v in await provider.list_versions())


async def test_rollback_follows_the_new_deployment_until_it_serves(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    provider = make_railway()
    before, target = railway.by_tag("v1.2.4"), railway.by_tag("v1.2.3")
    progress = Progress()

    outcome = await provider.rollback("v1.2.3", progress)

    new = railway.serving()
    assert new is not None and new.id not in (before.id, target.id)
    assert new.tag == "v1.2.3" and new.meta["reason"] == "rollback"
    assert railway.by_tag("v1.2.4").status == "REMOVED"
    assert railway.count("deploymentRollback") == 1
    assert outcome.summary.startswith(f"Railway serves deployment {new.id} (SUCCESS)")
    assert target.id in outcome.summary
    assert outcome.notes == [f"Its URL: https://api-{new.id[:8]}.up.railway.app"]
    # Each change is reported once, in order; a busy machine may poll past a short step.
    order = [f"New deployment {new.id}: {status}." for status in SUCCEEDS]
    statuses = [line for line in progress.lines if line.startswith("New deployment")]
    assert statuses == sorted(set(statuses), key=order.index)
    assert statuses[-1] == order[-1]
    assert await provider.current_version() == new.id


async def test_new_deployment_that_crashes_fails_and_says_what_serves(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.rollback_statuses = CRASHES
    before = railway.by_tag("v1.2.4")

    with pytest.raises(RollbackFailed) as caught:
        await make_railway().rollback("v1.2.3", Progress())

    new = railway.newest()
    assert new.status == "CRASHED"
    assert caught.value.message.startswith(f"Railway's new deployment {new.id} (the rollback")
    assert caught.value.message.endswith("ended CRASHED.")
    assert caught.value.target_state is not None
    assert caught.value.target_state.startswith(f"Railway serves deployment {before.id} (SUCCESS")


async def test_deployment_that_never_becomes_ready_times_out(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.rollback_statuses = NEVER_READY
    started = time.monotonic()

    with pytest.raises(TimedOut) as caught:
        await make_railway(deploy_timeout_seconds=1.5).rollback("v1.2.3", Progress())

    assert 1.5 <= time.monotonic() - started < 5
    new = railway.newest()
    assert caught.value.message == (
        f"Railway's new deployment {new.id} is still DEPLOYING after 1.5 s."
    )
    state = caught.value.target_state or ""
    assert state.startswith(f"Railway serves deployment {railway.by_tag('v1.2.4').id}")
    assert state.endswith(f"deployment {new.id} is DEPLOYING")


async def test_rejected_tokens_are_auth_rejected_with_a_hint(
    railway: FakeRailway, make_railway: RailwayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(AuthRejected, match=r"Railway said “Not Authorized”.*RAILWAY_TOKEN"):
        await make_railway(token_kind="account").list_versions()
    monkeypatch.setenv("OTHER_TOKEN", "rw-not-a-real-token")
    with pytest.raises(AuthRejected, match="OTHER_TOKEN holds a project token"):
        await make_railway(token_env="OTHER_TOKEN").current_version()
    # A project token sees only its own environment.
    with pytest.raises(AuthRejected, match="Not Authorized"):
        await make_railway(environment_id="6e0f1a55-0000-4000-8000-000000000000").plan("v1.2.3")
    railway.fail(401)
    with pytest.raises(AuthRejected, match=r"token was rejected \(HTTP 401\): Not Authorized"):
        await make_railway().describe_state()
    railway.fail(403, message="Forbidden")
    with pytest.raises(AuthRejected, match=r"HTTP 403"):
        await make_railway().describe_state()


async def test_account_token_goes_in_the_bearer_header(
    railway: FakeRailway, make_railway: RailwayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAILWAY_ACCOUNT_TOKEN", railway.account_token)
    provider = make_railway(token_kind="account", token_env="RAILWAY_ACCOUNT_TOKEN")

    assert await provider.current_version() == railway.by_tag("v1.2.4").id


async def test_unknown_ids_are_not_found(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    with pytest.raises(NotFound, match="Railway said “Service not found”"):
        await make_railway(service_id="0d6c7a4e-0000-4000-8000-000000000000").list_versions()
    railway.fail(404, message="No such route")
    with pytest.raises(NotFound, match=r"not found \(HTTP 404\)"):
        await make_railway().list_versions()
    railway.fail_graphql("Deployment not found", field="deploymentRollback")
    with pytest.raises(NotFound) as caught:
        await make_railway().rollback("v1.2.3", Progress())
    assert caught.value.message.endswith(
        "Railway said “Deployment not found”. Nothing was changed."
    )
    assert (caught.value.target_state or "").startswith("Railway serves deployment")


async def test_reads_are_retried_after_429_honouring_retry_after(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.fail(429, retry_after=1, field="deployments")
    started = time.monotonic()

    assert await make_railway().current_version() == railway.by_tag("v1.2.4").id

    assert time.monotonic() - started >= 1
    assert [c.status for c in railway.calls] == [429, 200]


async def test_reads_are_retried_after_server_errors(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.fail(503, times=2)

    versions = await make_railway().list_versions()

    assert versions
    assert [c.status for c in railway.calls] == [503, 503, 200]


async def test_a_long_rate_limit_gives_up_at_once_with_its_wait(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.fail(429, retry_after=120)

    with pytest.raises(RateLimited, match=r"rate limited \(HTTP 429\); retry after 120 s"):
        await make_railway().list_versions()
    assert railway.count("deployments") == 1


async def test_the_rollback_mutation_is_never_retried(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.fail(502, field="deploymentRollback")
    before = railway.by_tag("v1.2.4")

    with pytest.raises(Transient) as caught:
        await make_railway().rollback("v1.2.3", Progress())

    assert railway.count("deploymentRollback") == 1
    assert "HTTP 502" in caught.value.message and "not sent again" in caught.value.message
    assert (caught.value.target_state or "").startswith(f"Railway serves deployment {before.id}")
    assert railway.serving() is before


async def test_refusals_of_the_mutation_say_nothing_changed(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    provider = make_railway()
    railway.fail(409, field="deploymentRollback", message="A deployment is in progress")
    with pytest.raises(Conflicting, match=r"conflict \(HTTP 409\).*Nothing was changed"):
        await provider.rollback("v1.2.3", Progress())
    railway.fail(429, field="deploymentRollback", retry_after=30)
    with pytest.raises(RateLimited, match=r"retry after 30 s\. Nothing was changed"):
        await provider.rollback("v1.2.3", Progress())
    railway.rollback_answer = False
    with pytest.raises(Refused, match="Railway answered false") as caught:
        await provider.rollback("v1.2.3", Progress())
    assert caught.value.target_state
    assert railway.count("deploymentRollback") == 3
    assert railway.serving() is railway.by_tag("v1.2.4")


async def test_slow_answers_time_out(railway: FakeRailway, make_railway: RailwayFactory) -> None:
    railway.delay = 1.0

    with pytest.raises(TimedOut, match="no answer in time"):
        await make_railway(request_timeout_seconds=0.3).list_versions()


async def test_missing_token_names_the_variable(
    make_railway: RailwayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAILWAY_TOKEN")

    with pytest.raises(Refused, match="RAILWAY_TOKEN is not set"):
        await make_railway().list_versions()


async def test_the_token_never_reaches_errors_progress_or_logs(
    railway: FakeRailway, make_railway: RailwayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    progress = Progress()
    texts: list[str] = []
    with capture_logs() as events:
        provider = make_railway()
        await provider.rollback("v1.2.3", progress)
        # Even a server that echoes the token does not get it into a message.
        railway.fail_graphql(f"Token {railway.token} is not valid here")
        with pytest.raises(ProviderError) as echoed:
            await provider.describe_state()
        railway.rollback_statuses = CRASHES
        with pytest.raises(ProviderError) as crashed:
            await provider.rollback("v1.2.4", progress)
        for error in (echoed.value, crashed.value):
            texts += [str(error), error.message, error.target_state or "", repr(error)]

    assert "[redacted]" in echoed.value.message
    everything = "\n".join([*texts, *progress.lines, caplog.text, repr(events)])
    assert railway.token not in everything
    assert any(e["event"] == "railway.rollback" for e in events)
