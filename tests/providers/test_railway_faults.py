"""The railway provider's fault matrix: each fault on each kind of call a rollback makes.

Every call is a POST to one GraphQL endpoint, so the proxy is told which call to fault by
when it is armed: before the rollback (its first read), when the provider says it asks
for the rollback (the mutation), and when Railway accepted it (a poll of the watch).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from providers.base import ProviderError
from providers.railway import RailwayProvider, RailwaySettings
from tests.support.faults import ALL_FAULTS, TRANSIENT, Fault, FaultProxy, assert_names_cause
from tests.support.railway import FakeRailway

# The calls a rollback makes: kind -> the progress line that arms the proxy (None: at once).
CALLS: dict[str, str | None] = {
    "read deployments": None,
    "write deploymentRollback": "Asking Railway to roll back",
    "poll deployments": "Railway accepted the rollback",
}
ENDPOINT = "/graphql/v2"


@pytest.fixture
async def proxy(railway: FakeRailway) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the fake, holding a request longer than the client waits."""
    upstream = railway.url.removesuffix(ENDPOINT)
    async with FaultProxy(upstream, hang_seconds=1.5) as started:
        yield started


@pytest.mark.parametrize("kind", list(CALLS))
@pytest.mark.parametrize("fault", ALL_FAULTS)
async def test_rollback_through_the_fault(
    railway: FakeRailway,
    proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
    fault: Fault,
    kind: str,
) -> None:
    monkeypatch.setenv("RAILWAY_TOKEN", railway.token)
    before = railway.by_tag("v1.2.4")
    provider = RailwayProvider(
        RailwaySettings(
            provider="railway",
            endpoint=proxy.url + ENDPOINT,
            project_id=railway.project_id,
            service_id=railway.service_id,
            environment_id=railway.environment_id,
            poll_interval_seconds=0.1,
            deploy_timeout_seconds=15,
            request_timeout_seconds=0.8,
        )
    )
    arm = CALLS[kind]
    if arm is None:
        proxy.inject(fault, method="POST", path=ENDPOINT, times=1)

    async def progress(text: str) -> None:
        if arm is not None and text.startswith(arm):
            proxy.inject(fault, method="POST", path=ENDPOINT, times=1)

    try:
        if fault in TRANSIENT and not kind.startswith("write"):
            await provider.rollback("v1.2.3", progress)
            serving = railway.serving()
            assert serving is not None and serving.tag == "v1.2.3", railway.dump()
        else:
            with pytest.raises(ProviderError) as caught:
                await provider.rollback("v1.2.3", progress)
            assert_names_cause(fault, caught.value.message)
            said = caught.value.target_state or await provider.describe_state()
            if kind.startswith("poll"):
                # Railway carries on with an accepted rollback: either deployment may serve.
                new = railway.newest()
                assert new.tag == "v1.2.3" and "still finish" in caught.value.message
                assert said.startswith("Railway serves deployment "), said
                assert before.id in said or new.id in said, said
            else:
                assert railway.serving() is before, railway.dump()
                assert said.startswith(f"Railway serves deployment {before.id}"), said
        assert proxy.faulted, proxy.calls
        assert railway.count("deploymentRollback") <= 1  # the write is never sent twice
    finally:
        await provider.aclose()
