"""Preflight of the lambda_alias provider on moto: exact identities, checks and changes."""

from __future__ import annotations

from typing import Any

import pytest

from providers.base import Refused
from providers.capabilities import Describe, Preflight, Verdict
from tests.support.aws import (
    AwsEndpointFactory,
    LambdaFunctionFactory,
    ProviderFactory,
    alias_now,
)
from tests.support.progress import Recorder

SECRET = "hunter2"


def sha(lambda_client: Any, function: str, version: str) -> str:
    answer = lambda_client.get_function_configuration(FunctionName=function, Qualifier=version)
    return str(answer["CodeSha256"])


async def test_identities_are_version_and_code_sha(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory, lambda_client: Any
) -> None:
    target = lambda_function()
    provider = aws_provider(target)
    assert isinstance(provider, Preflight) and isinstance(provider, Describe)

    report = await provider.preflight("v1.2.3")

    assert report.target.version == "2"
    assert report.target.exact == (
        f"{target.function}:2 (sha256 {sha(lambda_client, target.function, '2')})"
    )
    assert report.current is not None
    assert report.current.exact == (
        f"{target.function}:3 (sha256 {sha(lambda_client, target.function, '3')})"
    )
    assert (await provider.identity_now()) == report.current
    checks = {c.name: c for c in report.checks}
    assert checks["version-exists"].verdict is Verdict.PASS
    assert checks["version-exists"].why == f"{target.function}:2 is published and Active."
    assert checks["alias-routing"].verdict is Verdict.PASS


async def test_changes_name_settings_and_env_names_never_values(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory
) -> None:
    target = lambda_function(
        ("v1", "v2"),
        configs={
            "v2": {
                "Runtime": "python3.13",
                "Handler": "app.main",
                "MemorySize": 512,
                "Timeout": 30,
                "Environment": {"Variables": {"DATABASE_URL": "x", "FEATURE_FLAGS": SECRET}},
            }
        },
    )
    provider = aws_provider(target)

    report = await provider.preflight("v1")

    assert report.changes[0].startswith("code: sha256 ")
    assert report.changes[1:] == [
        "runtime: python3.13 -> python3.12",
        "handler: app.main -> index.handler",
        "memory: 512 -> 128 MB",
        "timeout: 30 -> 3 s",
        "env names removed: FEATURE_FLAGS",
    ]
    assert SECRET not in repr(report) and "postgres://" not in repr(report)


async def test_same_code_says_only_settings_differ(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory, lambda_client: Any
) -> None:
    target = lambda_function(("v1",))
    # Publish the same code again with another memory size.
    lambda_client.update_function_configuration(FunctionName=target.function, MemorySize=256)
    lambda_client.publish_version(FunctionName=target.function, Description="v1-bigger")
    provider = aws_provider(target)

    report = await provider.preflight("v1-bigger")

    assert report.changes == [
        "rolls forward: version 2 is newer than version 1",
        f"code: the same (sha256 {sha(lambda_client, target.function, '1')}); only settings differ",
        "memory: 128 -> 256 MB",
    ]


async def test_a_split_alias_warns_with_versions_and_weights(
    lambda_function: LambdaFunctionFactory, aws_provider: ProviderFactory, lambda_client: Any
) -> None:
    target = lambda_function(alias_on="v1.2.3", weights={"v1.2.4": 0.1})
    provider = aws_provider(target)

    report = await provider.preflight("previous")

    (routing,) = [c for c in report.checks if c.name == "alias-routing"]
    assert routing.verdict is Verdict.WARN
    assert routing.why == (
        "Alias `live` sends 10 % to version 3 (the rest to version 2); after the rollback "
        "100 % goes to version 2."
    )
    assert report.current is not None and report.current.version == "2+3"
    assert report.current.exact == (
        f"{target.function}:2 (sha256 {sha(lambda_client, target.function, '2')}) 90 %, "
        f"{target.function}:3 (sha256 {sha(lambda_client, target.function, '3')}) 10 %"
    )


async def test_a_failed_version_fails_preflight_and_is_refused(
    lambda_function: LambdaFunctionFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    lambda_client: Any,
) -> None:
    target = lambda_function()
    endpoint = await aws_endpoint()

    # Lambda reports a version it could not set up as Failed, with a reason.
    def failed(config: dict[str, Any]) -> None:
        if config.get("Version") == "1":
            config["State"] = "Failed"
            config["StateReasonCode"] = "InvalidSubnet"
            config["StateReason"] = "The subnet subnet-0abc no longer exists."

    endpoint.edit("GetFunctionConfiguration", failed)
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)

    report = await provider.preflight("1")
    (exists,) = [c for c in report.checks if c.name == "version-exists"]
    assert exists.verdict is Verdict.FAIL
    assert exists.why == (
        f"{target.function}:1 is Failed, not Active: The subnet subnet-0abc no longer exists. "
        "(InvalidSubnet): the alias cannot serve it."
    )

    with pytest.raises(Refused) as caught:
        await provider.rollback("1", Recorder())
    assert "is Failed, not Active" in caught.value.message
    assert caught.value.target_state == f"alias `live` of `{target.function}` → version 3 (100 %)"
    assert "UpdateAlias" not in endpoint.actions
    assert alias_now(lambda_client, target) == ("3", {})
