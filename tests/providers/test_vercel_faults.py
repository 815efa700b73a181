"""The vercel provider's fault matrix: each fault on each kind of call a rollback makes.

A FaultProxy stands between the provider and the fake Vercel. A one-off fault on a read
is retried and the rollback ends on the target; any other ends in an error that names
its cause, and what it says runs (or what `describe_state` says after) is the truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from providers.base import ProviderError
from providers.vercel import VercelProvider, VercelSettings
from tests.support.faults import ALL_FAULTS, TRANSIENT, Fault, FaultProxy, assert_names_cause
from tests.support.vercel import FakeVercel

# The calls a rollback makes: (kind, method, path regex, injected when progress says ...).
CALLS: dict[str, tuple[str, str, str | None]] = {
    "read project": ("GET", r"^/v9/projects/", None),
    "read deployments": ("GET", r"^/v6/deployments", None),
    "read rolling release": ("GET", r"/rolling-release", None),
    "write rollback": ("POST", r"/rollback/", None),
    "poll alias job": ("GET", r"^/v9/projects/", "Vercel accepted the request"),
}
WRITES = {"write rollback"}


@pytest.fixture
async def proxy(vercel: FakeVercel) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the fake, holding a request longer than the client waits."""
    async with FaultProxy(vercel.url, hang_seconds=1.5) as started:
        yield started


def _expects_success(fault: Fault, kind: str) -> bool:
    if kind in WRITES:
        return False
    # Chosen: a project without Rolling Releases answers 404 there; it has none to abort.
    return fault in TRANSIENT or (kind == "read rolling release" and fault is Fault.NOT_FOUND)


@pytest.mark.parametrize("kind", list(CALLS))
@pytest.mark.parametrize("fault", ALL_FAULTS)
async def test_rollback_through_the_fault(
    vercel: FakeVercel,
    proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
    fault: Fault,
    kind: str,
) -> None:
    monkeypatch.setenv("VERCEL_TOKEN", vercel.token)
    vercel.job_seconds = 0.9
    method, path, after = CALLS[kind]
    settings: dict[str, Any] = vercel.settings(
        api_url=proxy.url, request_timeout_seconds=0.8, promote_timeout_seconds=15
    )
    provider = VercelProvider(VercelSettings.model_validate(settings))
    if after is None:
        proxy.inject(fault, method=method, path=path, times=1)

    async def progress(text: str) -> None:
        if after is not None and text.startswith(after):
            proxy.inject(fault, method=method, path=path, times=1)

    try:
        if _expects_success(fault, kind):
            await provider.rollback("v1.2.3", progress)
            assert vercel.serving().version == "1.2.3"
        else:
            with pytest.raises(ProviderError) as caught:
                await provider.rollback("v1.2.3", progress)
            assert_names_cause(fault, caught.value.message)
            await _assert_state_is_the_truth(vercel, provider, caught.value)
        assert proxy.faulted, proxy.calls
        assert len(vercel.routed("rollback")) <= 1  # the write is never sent twice
    finally:
        await provider.aclose()


async def _assert_state_is_the_truth(
    vercel: FakeVercel, provider: VercelProvider, error: ProviderError
) -> None:
    """What the error says runs is what runs, and so is what describe_state says after."""
    before, target = (vercel.project.by_version(v) for v in ("1.2.4", "1.2.3"))
    if error.target_state is not None:
        said = error.target_state
        assert before.url in said or target.url in said, said
        if not vercel.routed("rollback"):
            assert f"serves https://{before.url}" in said, said
    await asyncio.sleep(vercel.job_seconds)  # let an accepted job settle
    state = await provider.describe_state()
    assert f"serves https://{vercel.serving().url}" in state, state
