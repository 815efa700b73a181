"""The lambda_alias provider against moto in server mode, over real HTTP (no mocks)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from providers import ProviderSettings
from providers.base import Conflicting, NotFound, Refused
from tests.support.aws import (
    AwsEndpointFactory,
    LambdaFunctionFactory,
    ProviderFactory,
    alias_now,
)
from tests.support.progress import Recorder


async def test_versions_are_published_versions_named_by_number(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory
) -> None:
    target = lambda_function()
    provider = aws_provider(target)

    versions = await provider.list_versions()

    assert [v.name for v in versions] == ["3", "2", "1"]  # no $LATEST
    assert [v.name for v in versions if v.current] == ["3"]
    assert [v.name for v in versions if v.previous_stable] == ["2"]
    assert versions[1].detail.startswith('"v1.2.3", sha256 ')
    assert "last modified" in versions[1].detail
    assert versions[1].answers_to("v1.2.3") and versions[1].answers_to("previous")
    assert versions[0].created_at is not None and versions[0].created_at > versions[2].created_at
    assert await provider.current_version() == "3"
    assert await provider.describe_state() == (
        f"alias `live` of `{target.function}` → version 3 (100 %)"
    )


async def test_max_versions_offers_only_the_newest(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory
) -> None:
    target = lambda_function(("v1", "v2", "v3", "v4"), alias_on="v2")
    provider = aws_provider(target, max_versions=2)

    names = [v.name for v in await provider.list_versions()]

    # The two newest, and the one the alias points at even though it is older.
    assert names == ["4", "3", "2"]
    # An older one is not offered, but its number or description still names it.
    assert "FunctionVersion 1 " in (await provider.plan("1")).steps[0]
    assert "FunctionVersion 1 " in (await provider.plan("v1")).steps[0]


async def test_plan_names_the_call_and_changes_nothing(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory, lambda_client: Any
) -> None:
    target = lambda_function()
    provider = aws_provider(target)

    plan = await provider.plan("v1.2.2")

    assert "lambda:UpdateAlias" in plan.steps[0] and "FunctionVersion 1" in plan.steps[0]
    assert "RevisionId" in plan.steps[0]
    assert "version 3 (100 %) now" in plan.steps[0]
    assert "100 % to version 1" in plan.steps[1]
    assert plan.warnings == []
    assert alias_now(lambda_client, target) == ("3", {})


async def test_rollback_to_a_number(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory, lambda_client: Any
) -> None:
    target = lambda_function()
    provider = aws_provider(target)
    progress = Recorder()

    outcome = await provider.rollback("1", progress)

    assert alias_now(lambda_client, target) == ("1", {})
    assert outcome.summary == (
        f"Alias `live` of `{target.function}` now sends 100 % of traffic to version 1 "
        '("v1.2.2"), which is Active.'
    )
    assert progress.messages == ["Alias `live` set to version 1; reading it back…"]
    assert await provider.current_version() == "1"


async def test_rollback_to_previous_and_by_description(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory, lambda_client: Any
) -> None:
    target = lambda_function()
    provider = aws_provider(target)

    await provider.rollback("previous", Recorder())
    assert alias_now(lambda_client, target) == ("2", {})

    # Now on 2, `previous` means 1; a description names its version too.
    assert [v.name for v in await provider.list_versions() if v.previous_stable] == ["1"]
    await provider.rollback("v1.2.4", Recorder())
    assert alias_now(lambda_client, target) == ("3", {})


async def test_a_weighted_alias_goes_back_to_100_percent_old(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory, lambda_client: Any
) -> None:
    # A canary: alias on v1.2.3 (version 2), 10 % to the new v1.2.4 (version 3).
    target = lambda_function(alias_on="v1.2.3", weights={"v1.2.4": 0.1})
    provider = aws_provider(target)

    assert await provider.describe_state() == (
        f"alias `live` of `{target.function}` → version 2 (90 %), version 3 (10 %)"
    )
    versions = await provider.list_versions()
    assert [v.name for v in versions if v.current] == ["2+3"]
    # The old version, the one the alias sends most traffic to, is where a rollback goes.
    assert [v.name for v in versions if v.previous_stable] == ["2"]
    plan = await provider.plan("previous")
    assert plan.warnings == [
        "Alias `live` sends 10 % to version 3 (the rest to version 2); after the rollback "
        "100 % goes to version 2."
    ]

    outcome = await provider.rollback("2", Recorder())

    assert alias_now(lambda_client, target) == ("2", {})
    assert "now sends 100 % of traffic to version 2" in outcome.summary
    assert outcome.notes == ["It sent traffic to version 2 (90 %), version 3 (10 %) before."]


async def test_a_weighted_alias_rolled_back_further_says_so(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory, lambda_client: Any
) -> None:
    target = lambda_function(weights={"v1.2.3": 0.25})
    provider = aws_provider(target)

    plan = await provider.plan("1")

    assert plan.warnings == [
        "Alias `live` sends 25 % to version 2 (the rest to version 3); after the rollback "
        "100 % goes to version 1."
    ]
    await provider.rollback("1", Recorder())
    assert alias_now(lambda_client, target) == ("1", {})


async def test_a_concurrent_change_is_refused_by_revision_id_and_nothing_is_overwritten(
    lambda_function: LambdaFunctionFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    lambda_client: Any,
) -> None:
    target = lambda_function()
    endpoint = await aws_endpoint()
    # A pipeline shifts 20 % to version 2 between rollbot's GetAlias and its UpdateAlias.
    endpoint.before(
        "UpdateAlias",
        lambda: lambda_client.update_alias(
            FunctionName=target.function,
            Name="live",
            RoutingConfig={"AdditionalVersionWeights": {"2": 0.2}},
        ),
    )
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)

    with pytest.raises(Conflicting) as caught:
        await provider.rollback("1", Recorder())

    message = caught.value.message
    assert "changed since rollbot read it" in message and "nothing was overwritten" in message
    assert "version 3 (100 %)" in message  # what it was when read
    assert caught.value.target_state == (
        f"alias `live` of `{target.function}` → version 3 (80 %), version 2 (20 %)"
    )
    assert alias_now(lambda_client, target) == ("3", {"2": 0.2})
    assert endpoint.actions.count("UpdateAlias") == 1


async def test_unknown_and_ambiguous_versions_are_refused(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory, lambda_client: Any
) -> None:
    target = lambda_function(("v1.2.2", "v1.2.3 hotfix", "v1.2.3", "v1.2.4"))
    provider = aws_provider(target)

    with pytest.raises(NotFound) as caught:
        await provider.plan("9")
    assert caught.value.message.startswith(f"`{target.function}` has no version 9 (available: ")
    assert 'version 2 ("v1.2.3 hotfix")' in caught.value.message

    with pytest.raises(NotFound) as caught:
        await provider.rollback("v9.9.9", Recorder())
    assert "No published version" in caught.value.message

    with pytest.raises(Refused) as caught:
        await provider.rollback("v1.2.3", Recorder())
    assert caught.value.message == (
        f"`v1.2.3` is in the description of 2 versions of `{target.function}` "
        '(version 3 ("v1.2.3"), version 2 ("v1.2.3 hotfix")): name one by its number.'
    )
    # The listing gives the shared word to neither version.
    versions = {v.name: v for v in await provider.list_versions()}
    assert not versions["3"].answers_to("v1.2.3") and not versions["2"].answers_to("v1.2.3")
    assert versions["1"].answers_to("v1.2.2")

    with pytest.raises(Refused) as caught:
        await provider.rollback("4", Recorder())
    assert "already sends all traffic to version 4" in caught.value.message
    assert alias_now(lambda_client, target) == ("4", {})


async def test_a_missing_function_or_alias_is_not_found(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory
) -> None:
    target = lambda_function()

    with pytest.raises(NotFound) as caught:
        await aws_provider(target, alias="staging").list_versions()
    assert "ResourceNotFoundException" in caught.value.message

    with pytest.raises(NotFound):
        await aws_provider(target, function="no-such-function").describe_state()


def test_settings_refuse_a_qualified_arn_and_a_numeric_alias() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(ProviderSettings)
    base = {"provider": "lambda_alias", "region": "eu-west-1", "alias": "live"}
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:checkout"

    assert adapter.validate_python({**base, "function": arn}).function == arn
    with pytest.raises(ValidationError, match="name the alias in `alias`"):
        adapter.validate_python({**base, "function": f"{arn}:live"})
    with pytest.raises(ValidationError, match="not a number"):
        adapter.validate_python({**base, "function": "checkout", "alias": "7"})


async def test_freeze_is_watch_only(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory
) -> None:
    provider: Any = aws_provider(lambda_function())

    record = await provider.freeze("3", "2")

    assert record.action.startswith("watch only: Lambda has no setting")
    assert "a deploy of 3 again shows as drift" in record.action
    assert "Lambda has no setting to undo" in await provider.unfreeze(record)
