"""The railway provider's watch after deploymentRollback: rate limits, pace of progress."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest

from providers.base import Transient
from tests.support.railway import FakeRailway, RailwayFactory


class Timed:
    """Keeps each progress line with the moment it was reported."""

    def __init__(self, then: Callable[[str], None] | None = None) -> None:
        self.lines: list[tuple[float, str]] = []
        self.then = then

    async def __call__(self, text: str) -> None:
        self.lines.append((time.monotonic(), text))
        if self.then is not None:
            self.then(text)

    @property
    def texts(self) -> list[str]:
        """The lines without their times."""
        return [text for _, text in self.lines]


async def test_a_429_while_watching_waits_as_long_as_retry_after_asks(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    def once_accepted(text: str) -> None:
        if text.startswith("Railway accepted the rollback"):
            railway.fail(429, retry_after=2, times=5, field="deployments")

    progress = Timed(once_accepted)

    outcome = await make_railway(deploy_timeout_seconds=20).rollback("v1.2.3", progress)

    new = railway.serving()
    assert new is not None and new.tag == "v1.2.3" and new.id in outcome.summary
    reads = [c for c in railway.calls if "deployments" in c.fields]
    limited = [i for i, c in enumerate(reads) if c.status == 429]
    assert len(limited) == 5, railway.dump()
    # After each 429 the next read waited at least the 2 s Retry-After asked for.
    gaps = [reads[i + 1].at - reads[i].at for i in limited]
    assert min(gaps) >= 2, gaps
    said = [t for t in progress.texts if "rate limited" in t]
    assert len(said) == 1, progress.texts  # one line for the bad spell, not one per poll
    assert not any("failed" in t.lower() for t in progress.texts)


async def test_progress_is_reported_on_change_and_at_most_every_few_seconds(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.step_seconds = 0.4  # QUEUED, BUILDING, DEPLOYING, SUCCESS: a change every 0.4 s
    progress = Timed()

    await make_railway(deploy_timeout_seconds=20, progress_interval_seconds=1).rollback(
        "v1.2.3", progress
    )

    watched = [(at, t) for at, t in progress.lines if t.startswith("New deployment")]
    polls = sum("deployments" in c.fields for c in railway.calls)
    assert polls > 10 and len(watched) < 4, progress.texts  # never one line per poll
    assert watched[-1][1].endswith(": SUCCESS."), progress.texts  # the outcome is never held
    times = [at for at, _ in watched[:-1]]
    assert all(b - a >= 1 for a, b in itertools.pairwise(times)), watched
    assert len({t for _, t in watched}) == len(watched)  # each line says something new


async def test_a_lost_answer_to_the_rollback_is_checked_with_railway_not_resent(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.fail(502, field="deploymentRollback")  # answered before reaching the resolver
    before = railway.by_tag("v1.2.4")

    with pytest.raises(Transient) as caught:
        await make_railway(deploy_timeout_seconds=20).rollback("v1.2.3", Timed())

    assert "HTTP 502" in caught.value.message
    assert "Railway shows no new deployment of commit" in caught.value.message
    assert "was not sent again" in caught.value.message
    assert (caught.value.target_state or "").startswith(f"Railway serves deployment {before.id}")
    assert railway.count("deploymentRollback") == 1
    assert railway.serving() is before


async def test_an_applied_rollback_whose_answer_was_lost_is_followed_not_resent(
    railway: FakeRailway, make_railway: RailwayFactory
) -> None:
    railway.lose_rollback_answer = 502  # Railway started it; the answer got lost on the way

    outcome = await make_railway(deploy_timeout_seconds=20).rollback("v1.2.3", Timed())

    new = railway.serving()
    assert new is not None and new.tag == "v1.2.3" and new.id in outcome.summary
    assert railway.count("deploymentRollback") == 1
