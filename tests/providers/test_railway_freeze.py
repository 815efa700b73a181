"""Freezing a Railway service turns its automatic deployments off, and unfreezing back on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from providers.base import ProviderError, Refused
from providers.capabilities import Freeze
from providers.railway import RailwayProvider, RailwaySettings
from tests.support.railway import FakeRailway

Make = Callable[..., RailwayProvider]
UPDATE = "serviceInstanceAutoDeployUpdate"


@pytest.fixture
async def make(railway: FakeRailway, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Make]:
    """Build providers for the fake's service with an account token (or a project one)."""
    monkeypatch.setenv("RAILWAY_TOKEN", railway.account_token)
    monkeypatch.setenv("RAILWAY_PROJECT_TOKEN", railway.token)
    made: list[RailwayProvider] = []

    def build(**settings: Any) -> RailwayProvider:
        values: dict[str, Any] = {
            "provider": "railway",
            "endpoint": railway.url,
            "token_kind": "account",
            "project_id": railway.project_id,
            "service_id": railway.service_id,
            "environment_id": railway.environment_id,
            **settings,
        }
        provider = RailwayProvider(RailwaySettings(**values))
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


async def test_freeze_turns_auto_deploys_off(railway: FakeRailway, make: Make) -> None:
    provider = make()
    assert isinstance(provider, Freeze)
    assert railway.auto_deploy is True

    record = await provider.freeze("dep-bad", "dep-good")

    assert railway.auto_deploy is False
    assert record.saved == {"autoDeployEnabled": "true"}
    assert "auto-deploys disabled" in record.action
    assert railway.account_token not in record.action + str(record.saved)
    assert railway.count(UPDATE) == 1


async def test_a_second_freeze_changes_nothing(railway: FakeRailway, make: Make) -> None:
    provider = make()
    first = await provider.freeze("dep-bad", "dep-good")
    second = await provider.freeze("dep-bad", "dep-good")

    assert second == first
    assert railway.count(UPDATE) == 1
    assert railway.auto_deploy is False


async def test_unfreeze_restores_the_setting_exactly(railway: FakeRailway, make: Make) -> None:
    provider = make()
    record = await provider.freeze("dep-bad", "dep-good")

    said = await provider.unfreeze(record)

    assert railway.auto_deploy is True
    assert "re-enabled" in said


async def test_a_service_without_auto_deploys_stays_so(railway: FakeRailway, make: Make) -> None:
    railway.auto_deploy = False
    provider = make()

    record = await provider.freeze("dep-bad", "dep-good")
    assert record.saved == {"autoDeployEnabled": "false"}
    await provider.unfreeze(record)

    assert railway.auto_deploy is False
    assert railway.count(UPDATE) == 0


async def test_a_change_in_between_is_not_overwritten(railway: FakeRailway, make: Make) -> None:
    provider = make()
    record = await provider.freeze("dep-bad", "dep-good")
    railway.auto_deploy = True  # someone turned it back on in the dashboard

    with pytest.raises(Refused, match="changed since the freeze"):
        await provider.unfreeze(record)
    assert railway.count(UPDATE) == 1


async def test_a_project_token_is_refused_naming_the_permission(
    railway: FakeRailway, make: Make
) -> None:
    provider = make(token_kind="project", token_env="RAILWAY_PROJECT_TOKEN")

    with pytest.raises(Refused, match="account or workspace token") as caught:
        await provider.freeze("dep-bad", "dep-good")
    assert railway.token not in str(caught.value)
    assert railway.auto_deploy is True


async def test_a_rate_limited_update_is_retried(railway: FakeRailway, make: Make) -> None:
    railway.fail(429, field=UPDATE, retry_after=0)
    await make().freeze("dep-bad", "dep-good")

    assert railway.auto_deploy is False
    assert railway.count(UPDATE) == 2


async def test_an_unanswered_update_is_read_back_not_resent(
    railway: FakeRailway, make: Make
) -> None:
    railway.lose_update_answer = 502
    record = await make().freeze("dep-bad", "dep-good")

    assert railway.auto_deploy is False
    assert record.saved == {"autoDeployEnabled": "true"}
    assert railway.count(UPDATE) == 1


async def test_an_update_that_did_not_land_is_not_resent(railway: FakeRailway, make: Make) -> None:
    railway.fail(502, field=UPDATE)
    with pytest.raises(ProviderError, match="not sent again"):
        await make().freeze("dep-bad", "dep-good")
    assert railway.auto_deploy is True
    assert railway.count(UPDATE) == 1
