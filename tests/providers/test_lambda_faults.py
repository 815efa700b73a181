"""Fault matrix: every fault AWS can answer, on every call a Lambda alias rollback makes.

Each case runs a rollback through the stand-in endpoint (tests/support/aws_standin.py,
Lambda's REST errors picked by operation) in front of moto. A one-off transient fault on
a read is retried and the rollback ends on the target; anything else fails with a message
that names the cause, and the state the error or describe_state gives agrees with what
moto holds. UpdateAlias is never sent twice.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from providers.base import Provider, ProviderError, RateLimited, RollbackFailed
from tests.support.aws import (
    AwsEndpointFactory,
    LambdaFunctionFactory,
    ProviderFactory,
    alias_now,
)
from tests.support.aws_standin import AwsStandIn
from tests.support.faults import ALL_FAULTS, TRANSIENT, Fault, assert_names_cause
from tests.support.progress import Recorder

# (operation, how many of its calls go through before the fault), in the rollback's order.
CALLS = [
    ("GetAlias", 0),
    ("ListVersionsByFunction", 0),
    ("GetFunctionConfiguration", 0),  # the target's State, before the update
    ("UpdateAlias", 0),
    ("GetAlias", 1),  # the read back after the update
    ("GetFunctionConfiguration", 1),
]
AFTER_THE_UPDATE = {("GetAlias", 1), ("GetFunctionConfiguration", 1)}
# Short enough to find a held request (2 s) quickly, long enough for moto on a busy machine.
FAST = {"api_timeout_seconds": 1.0}


async def run(provider: Provider, target: str) -> ProviderError | None:
    try:
        await provider.rollback(target, Recorder())
    except ProviderError as exc:
        return exc
    return None


async def test_the_matrix_covers_every_call_a_rollback_makes(
    lambda_function: LambdaFunctionFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
) -> None:
    endpoint = await aws_endpoint()
    target = lambda_function()
    await aws_provider(target, endpoint_url=endpoint.endpoint_url).rollback("2", Recorder())

    assert sorted(endpoint.actions) == sorted(action for action, _ in CALLS)


@pytest.mark.parametrize("fault", ALL_FAULTS, ids=str)
@pytest.mark.parametrize(("action", "after"), CALLS, ids=lambda v: str(v))
async def test_lambda_rollback_under_fault(
    lambda_function: LambdaFunctionFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    lambda_client: Any,
    fault: Fault,
    action: str,
    after: int,
) -> None:
    target = lambda_function()
    endpoint: AwsStandIn = await aws_endpoint(hang_seconds=2)
    endpoint.inject(fault, action=action, after=after)
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url, **FAST)

    error = await run(provider, "2")

    now, weights = alias_now(lambda_client, target)
    assert endpoint.intercepted == [action]
    assert weights == {}
    if fault in TRANSIENT and action != "UpdateAlias":
        assert error is None, error.message if error else ""
        assert now == "2"
        return
    assert error is not None, "the rollback succeeded through a fault that cannot be retried"
    assert_names_cause(fault, error.message)
    if fault is Fault.FORBIDDEN:
        assert f"IAM action lambda:{action}" in error.message
    if (action, after) in AFTER_THE_UPDATE:
        assert isinstance(error, RollbackFailed)
        assert now == "2"
    else:
        assert now == "3"
    state = error.target_state or await provider.describe_state()
    assert f"→ version {now} (100 %)" in state, state
    assert endpoint.actions.count("UpdateAlias") <= 1


async def test_an_update_whose_answer_was_lost_is_read_back_not_resent(
    lambda_function: LambdaFunctionFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    lambda_client: Any,
) -> None:
    target = lambda_function(weights={"v1.2.3": 0.1})
    endpoint = await aws_endpoint()
    endpoint.lose_answer("UpdateAlias")
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url, **FAST)

    outcome = await provider.rollback("1", Recorder())

    assert "now sends 100 % of traffic to version 1" in outcome.summary
    assert endpoint.actions.count("UpdateAlias") == 1
    assert alias_now(lambda_client, target) == ("1", {})


async def test_an_update_that_was_not_applied_is_said_so_and_not_resent(
    lambda_function: LambdaFunctionFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    lambda_client: Any,
) -> None:
    target = lambda_function()
    endpoint = await aws_endpoint(hang_seconds=2)
    endpoint.inject(Fault.TIMEOUT, action="UpdateAlias")
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url, **FAST)

    error = await run(provider, "1")

    assert error is not None and error.message.endswith("It was not applied.")
    assert error.target_state == f"alias `live` of `{target.function}` → version 3 (100 %)"
    assert endpoint.actions.count("UpdateAlias") == 1
    assert alias_now(lambda_client, target) == ("3", {})


async def test_throttling_honours_retry_after(
    lambda_function: LambdaFunctionFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
) -> None:
    target = lambda_function()
    endpoint = await aws_endpoint()
    # Lambda's throttle: HTTP 429 TooManyRequestsException with Retry-After: 1.
    endpoint.inject(Fault.RATE_LIMITED, action="ListVersionsByFunction", times=2)
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url, **FAST)

    started = time.monotonic()
    versions = await provider.list_versions()

    assert [v.name for v in versions] == ["3", "2", "1"]
    assert time.monotonic() - started >= 2.0  # two waits of at least Retry-After
    endpoint.inject(Fault.RATE_LIMITED, action="UpdateAlias")
    error = await run(provider, "1")
    assert isinstance(error, RateLimited)
    assert "TooManyRequestsException" in error.message and "not applied" in error.message
