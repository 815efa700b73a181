"""Freezing a Vercel project pauses auto-assignment of its production domains, and back."""

from __future__ import annotations

import pytest

from providers.base import ProviderError, Refused
from providers.capabilities import Freeze
from tests.support.vercel import FakeVercel, Make


async def test_freeze_pauses_auto_assignment_and_records_it(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    provider = make_vercel()
    assert isinstance(provider, Freeze)
    assert vercel.project.auto_assign is True

    record = await provider.freeze("1.2.4", "1.2.3")

    assert vercel.project.auto_assign is False
    assert record.saved == {"autoAssignCustomDomains": "true"}
    assert "auto-assignment of production domains paused" in record.action
    assert vercel.token not in record.action + str(record.saved)
    [update] = vercel.routed("project-update")
    assert update.method == "PATCH"


async def test_a_second_freeze_changes_nothing(vercel: FakeVercel, make_vercel: Make) -> None:
    provider = make_vercel()
    first = await provider.freeze("1.2.4", "1.2.3")
    second = await make_vercel().freeze("1.2.4", "1.2.3")

    assert second == first
    assert len(vercel.routed("project-update")) == 1
    assert vercel.project.auto_assign is False


async def test_unfreeze_restores_the_setting_exactly(vercel: FakeVercel, make_vercel: Make) -> None:
    provider = make_vercel()
    record = await provider.freeze("1.2.4", "1.2.3")

    said = await provider.unfreeze(record)

    assert vercel.project.auto_assign is True
    assert "resumed" in said


async def test_a_project_paused_before_stays_paused(vercel: FakeVercel, make_vercel: Make) -> None:
    vercel.project.auto_assign = False
    provider = make_vercel()

    record = await provider.freeze("1.2.4", "1.2.3")
    assert record.saved == {"autoAssignCustomDomains": "false"}
    assert vercel.routed("project-update") == []

    await provider.unfreeze(record)
    assert vercel.project.auto_assign is False
    assert vercel.routed("project-update") == []


async def test_a_change_in_between_is_not_overwritten(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    provider = make_vercel()
    record = await provider.freeze("1.2.4", "1.2.3")
    # Someone resumed it in the dashboard, then paused it again.
    vercel.project.auto_assign = False
    vercel.project.auto_assign_updated_by = "usr_someone"

    with pytest.raises(Refused, match="changed since the freeze"):
        await provider.unfreeze(record)
    assert vercel.project.auto_assign is False
    assert len(vercel.routed("project-update")) == 1


async def test_a_token_that_may_not_change_the_project_is_refused(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.read_only = True
    provider = make_vercel()

    with pytest.raises(Refused, match="permission to change project settings") as caught:
        await provider.freeze("1.2.4", "1.2.3")
    assert vercel.token not in str(caught.value)
    assert vercel.project.auto_assign is True


async def test_a_rate_limited_update_is_retried(vercel: FakeVercel, make_vercel: Make) -> None:
    vercel.rate_limit("project-update", retry_after=0)
    record = await make_vercel().freeze("1.2.4", "1.2.3")

    assert vercel.project.auto_assign is False
    assert record.saved == {"autoAssignCustomDomains": "true"}
    assert len(vercel.routed("project-update")) == 2


async def test_an_unanswered_update_is_read_back_not_resent(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.lose_update_answer = 502
    record = await make_vercel().freeze("1.2.4", "1.2.3")

    assert vercel.project.auto_assign is False
    assert record.saved == {"autoAssignCustomDomains": "true"}
    assert len(vercel.routed("project-update")) == 1


async def test_an_update_that_did_not_land_is_not_resent(
    vercel: FakeVercel, make_vercel: Make
) -> None:
    vercel.fail("project-update", 502)
    with pytest.raises(ProviderError, match="not sent again"):
        await make_vercel().freeze("1.2.4", "1.2.3")
    assert vercel.project.auto_assign is True
    assert len(vercel.routed("project-update")) == 1
