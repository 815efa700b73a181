"""The vercel provider on bad days: what it offers, rolling releases, rate limits, CDN pages."""

from __future__ import annotations

import time

import pytest

from providers.base import NotFound, RateLimited, Refused, Transient
from tests.support.vercel import FakeVercel, Make, Steps


async def test_only_deployments_that_served_production_are_offered(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    project = vercel.project
    vercel.add_deployment(project, {"version": "1.2.5"}, substate="STAGED")  # --skip-domain
    vercel.add_deployment(project, {"version": "1.2.6"}, target=None)  # a preview
    vercel.add_deployment(project, {"version": "1.2.7"}, state="CANCELED")

    for mode in ("rollback", "promote"):
        provider = make_vercel(mode=mode)
        assert [v.name for v in await provider.list_versions()] == ["v1.2.4", "v1.2.3", "v1.2.2"]
        with pytest.raises(Refused) as caught:
            await provider.plan("v1.2.5")
        assert "staged production build" in caught.value.message
        assert "never served production" in caught.value.message
        for never_production in ("v1.2.6", "v1.2.7"):
            with pytest.raises(NotFound):
                await provider.plan(never_production)
    assert vercel.routed("rollback") == vercel.routed("promote") == []


async def test_instant_rollback_offers_only_its_candidates(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.project.by_version("1.2.2").rollback_candidate = False

    provider = make_vercel()
    assert [v.name for v in await provider.list_versions()] == ["v1.2.4", "v1.2.3"]
    with pytest.raises(Refused) as caught:
        await provider.rollback("v1.2.2", Steps())
    assert "not an instant rollback candidate" in caught.value.message
    assert "mode: promote" in caught.value.message
    assert vercel.routed("rollback") == []
    # `vercel promote` has no such rule: the deployment served production once.
    promoted = [v.name for v in await make_vercel(mode="promote").list_versions()]
    assert promoted == ["v1.2.4", "v1.2.3", "v1.2.2"]


async def test_a_429_while_waiting_for_the_alias_job_is_waited_out(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.job_seconds = 6  # the status reads below all fall while the job runs
    vercel.rate_limit("project", times=4, retry_after=1, during_job=True)
    steps = Steps()
    started = time.monotonic()

    outcome = await make_vercel(promote_timeout_seconds=20).rollback("v1.2.3", steps)

    assert time.monotonic() - started >= 4  # each Retry-After was honoured
    assert vercel.serving().version == "1.2.3"
    assert "now serves" in outcome.summary
    assert len(vercel.routed("rollback")) == 1
    told = "\n".join(steps.lines)
    assert told.count("rate limited") == 1  # said once, not once per poll
    assert "failed" not in told


async def test_a_403_that_is_a_rate_limit_is_waited_out_not_a_bad_token(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.rate_limit("deployments", status=403, retry_after=1)
    started = time.monotonic()

    versions = await make_vercel().list_versions()

    assert versions[0].name == "v1.2.4"
    assert time.monotonic() - started >= 1
    assert len(vercel.routed("deployments")) == 2


async def test_a_403_rate_limit_that_outlasts_the_reads_is_reported_as_one(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.rate_limit("project", status=403, retry_after=120)
    with pytest.raises(RateLimited) as caught:
        await make_vercel().list_versions()
    assert "rate limited (HTTP 403)" in caught.value.message
    assert "retry after 120 s" in caught.value.message
    assert "token" not in caught.value.message


async def test_a_cdn_error_page_is_named_and_never_quoted(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.fail_html("project", 502, times=10)
    with pytest.raises(Transient) as caught:
        await make_vercel().current_version()
    assert "an error page from a proxy or CDN in front of Vercel (HTTP 502)" in (
        caught.value.message
    )
    assert "<" not in caught.value.message and "cloudflare" not in caught.value.message.lower()


async def test_a_cdn_error_page_on_the_rollback_is_checked_with_vercel_not_resent(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.fail_html("rollback", 502)
    with pytest.raises(Transient) as caught:
        await make_vercel().rollback("v1.2.3", Steps())
    assert "error page from a proxy or CDN in front of Vercel (HTTP 502)" in caught.value.message
    assert "was not sent again" in caught.value.message
    assert "(v1.2.4)" in (caught.value.target_state or "")
    assert len(vercel.routed("rollback")) == 1
    assert vercel.serving().version == "1.2.4"


async def test_an_active_rolling_release_is_shown_and_its_canary_not_offered(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    canary = vercel.start_rolling_release("1.2.5", percent=10)
    provider = make_vercel()

    assert await provider.current_version() == "v1.2.4"
    assert [v.name for v in await provider.list_versions()] == ["v1.2.4", "v1.2.3", "v1.2.2"]
    state = await provider.describe_state()
    assert f"a rolling release of https://{canary.url} serves 10% of traffic" in state


async def test_rolling_back_to_the_base_of_a_rolling_release_aborts_it(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.start_rolling_release("1.2.5", percent=10)
    provider = make_vercel()
    steps = Steps()

    plan = await provider.plan("v1.2.4")
    assert "Abort the active rolling release" in "\n".join(plan.steps)
    outcome = await provider.rollback("v1.2.4", steps)

    rolling = vercel.project.rolling
    assert rolling is not None and rolling.state == "ABORTED"
    assert vercel.serving().version == "1.2.4"
    (abort,) = vercel.routed("rolling-abort")
    assert abort.query["teamId"] == vercel.team_id
    assert vercel.routed("rollback") == []
    assert "aborted" in outcome.summary and "all traffic" in outcome.summary
    assert "rolling release" not in await provider.describe_state()


async def test_rolling_back_past_a_rolling_release_is_refused_with_the_way_out(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.start_rolling_release("1.2.5", percent=10)
    with pytest.raises(Refused) as caught:
        await make_vercel().rollback("v1.2.3", Steps())
    message = caught.value.message
    assert "rolling release" in message and "v1.2.4" in message
    assert "abort" in message
    assert vercel.routed("rollback") == vercel.routed("rolling-abort") == []
    assert vercel.serving().version == "1.2.4"
