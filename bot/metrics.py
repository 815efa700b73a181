"""Prometheus metrics of one rollbot process, kept current by events instead of scans."""

from __future__ import annotations

from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from bot.events import Moved
from bot.metrics_outcomes import Outcomes, ProviderOf
from bot.models import State
from bot.store.base import LeaseStore, RollbackStore

# The Content-Type of what `Metrics.exposition` returns.
CONTENT_TYPE = CONTENT_TYPE_LATEST
# The from_state of a rollback's first transition, into the state it is created in.
NEW = "none"
# What Slack asked for: a slash command, a block action, a modal submitted or closed.
RequestKind = Literal["command", "action", "view", "other"]
# Slack shows the person an error when an answer takes longer than 3 seconds.
ACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)


class Metrics:
    """The metrics in a registry of their own, so several apps in one process never collide."""

    def __init__(self, provider_of: ProviderOf | None = None) -> None:
        self.registry = CollectorRegistry()
        self.outcomes = Outcomes(self.registry, provider_of or (lambda _: "unknown"))
        self._rollbacks = Gauge(
            "rollbot_rollbacks",
            "Rollbacks in each state.",
            ["state"],
            registry=self.registry,
        )
        self._transitions = Counter(
            "rollbot_transitions",
            "State changes of rollbacks since this process started.",
            ["from_state", "to_state"],
            registry=self.registry,
        )
        self._locks = Gauge(
            "rollbot_locks_held",
            "Service environment locks held now.",
            registry=self.registry,
        )
        self._requests = Counter(
            "rollbot_slack_requests",
            "Verified requests from Slack, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self._ack = Histogram(
            "rollbot_ack_seconds",
            "Seconds to answer a request from Slack over HTTP (Slack gives up after 3).",
            buckets=ACK_BUCKETS,
            registry=self.registry,
        )
        self._slack_failures = Counter(
            "rollbot_slack_api_failures",
            "Slack Web API calls that failed (429, 5xx, a lost connection), by method and "
            "reason; rate-limited ones are sent again after Retry-After.",
            ["method", "reason"],
            registry=self.registry,
        )
        # Every state is shown from the start, at 0, so a query never finds a series missing.
        for state in State:
            self._rollbacks.labels(state=state.value).set(0)

    async def seed(self, store: RollbackStore) -> None:
        """Set the count of rollbacks in each state from the store; done once at start-up."""
        counts = await store.count_by_state()
        for state in State:
            self._rollbacks.labels(state=state.value).set(counts.get(state, 0))
        self.outcomes.seed(counts)

    def transitioned(self, old: State | None, new: State) -> None:
        """Count a rollback moving from `old` (None: a new rollback) to `new`."""
        if old is not None:
            self._rollbacks.labels(state=old.value).dec()
        self._rollbacks.labels(state=new.value).inc()
        from_state = NEW if old is None else old.value
        self._transitions.labels(from_state=from_state, to_state=new.value).inc()

    async def on_moved(self, event: Moved) -> None:
        """Count a transition the engine applied (a subscriber of its events)."""
        self.transitioned(event.previous, event.rollback.state)
        self.outcomes.on_moved(event)

    def slack_request(self, kind: RequestKind) -> None:
        """Count one verified request from Slack."""
        self._requests.labels(kind=kind).inc()

    def slack_api_failed(self, method: str, reason: str) -> None:
        """Count one failed Slack Web API call."""
        self._slack_failures.labels(method=method, reason=reason).inc()

    def acked(self, seconds: float) -> None:
        """Record how long the answer to one request from Slack took."""
        self._ack.observe(seconds)

    async def exposition(self, store: LeaseStore) -> bytes:
        """Render every metric in Prometheus' text format."""
        # Leases end by expiring as well as by release, and nothing happens when one
        # expires, so a gauge kept by events would go on counting it. Counting the live
        # lock rows here (at most one per service environment, never a rollback) stays
        # right and costs one small query per scrape.
        self._locks.set(len(await store.locks()))
        return generate_latest(self.registry)
