"""Metrics of how rollbacks end: by provider, outcome and severity, and how long each part took.

Kept from the engine's transitions. Durations that start and end in one process (the run,
the wait for approval) are measured there; one taken over by another replica is counted
but not timed. Time to recovery (issue detected, or requested, to verified) is read from
the rollback itself, so any replica can observe it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bot.events import Moved
from bot.models import FINAL_STATES, Rollback, State
from bot.states import LOCKED_STATES, Trigger

# Seconds, from a container swap to a slow ECS deployment.
DURATION_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)
# A step may take a fraction of a second (an alias moved) or many minutes (a migration).
STEP_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
APPROVAL_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600)
ProviderOf = Callable[[Rollback], str]


class Outcomes:
    """Counters and histograms of finished rollbacks, fed by `Moved` events."""

    def __init__(self, registry: CollectorRegistry, provider_of: ProviderOf) -> None:
        self._provider_of = provider_of
        self._started: dict[str, float] = {}
        self._awaiting: dict[str, float] = {}
        self._finished = Counter(
            "rollbot_rollbacks_finished",
            "Rollbacks that ended, by provider, outcome (final state) and severity.",
            ["provider", "outcome", "severity"],
            registry=registry,
        )
        self._duration = Histogram(
            "rollbot_rollback_duration_seconds",
            "From the start of the run to its end, by provider and outcome.",
            ["provider", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._steps = Histogram(
            "rollbot_step_duration_seconds",
            "How long each step of a rollback ran, by its kind and how it ended (done, failed).",
            ["kind", "status"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self._recovery = Histogram(
            "rollbot_time_to_recovery_seconds",
            "From the issue detected (else the request) to the rollback verified, by provider.",
            ["provider"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._approval = Histogram(
            "rollbot_approval_wait_seconds",
            "From waiting for approval to approved.",
            buckets=APPROVAL_BUCKETS,
            registry=registry,
        )
        self._verification = Counter(
            "rollbot_verification_failures",
            "Rollbacks whose steps ran but whose verification failed, by provider.",
            ["provider"],
            registry=registry,
        )
        self._in_flight = Gauge(
            "rollbot_rollbacks_in_flight",
            "Rollbacks approved and not yet ended (they hold their service's lock).",
            registry=registry,
        )

    def seed(self, counts: dict[State, int]) -> None:
        """Set the in-flight count from the store at start-up."""
        self._in_flight.set(sum(counts.get(state, 0) for state in LOCKED_STATES))

    def on_moved(self, event: Moved) -> None:
        """Observe one transition."""
        rb, now = event.rollback, time.monotonic()
        if event.previous not in LOCKED_STATES and rb.state in LOCKED_STATES:
            self._in_flight.inc()
        elif event.previous in LOCKED_STATES and rb.state not in LOCKED_STATES:
            self._in_flight.dec()
        if rb.state is State.AWAITING_APPROVAL:
            self._awaiting[rb.id] = now
        if event.previous is State.AWAITING_APPROVAL and rb.state is not State.AWAITING_APPROVAL:
            waited = self._awaiting.pop(rb.id, None)
            if waited is not None and rb.state in LOCKED_STATES:
                self._approval.observe(now - waited)
        if rb.state is State.RUNNING and event.trigger in (Trigger.START, Trigger.START_DRILL):
            self._started[rb.id] = now
        if rb.state in FINAL_STATES and event.previous not in FINAL_STATES:
            self._ended(event, now)

    def _ended(self, event: Moved, now: float) -> None:
        rb = event.rollback
        provider, outcome = self._provider_of(rb), rb.state.value
        self._finished.labels(provider, outcome, rb.severity or "none").inc()
        started = self._started.pop(rb.id, None)
        self._awaiting.pop(rb.id, None)
        if started is not None:
            self._duration.labels(provider, outcome).observe(now - started)
        for step in rb.steps:
            if step.started_at is not None and step.finished_at is not None:
                ran = (step.finished_at - step.started_at).total_seconds()
                self._steps.labels(step.kind, step.status.value).observe(ran)
        if event.previous is State.VERIFYING and rb.state is State.FAILED:
            self._verification.labels(provider).inc()
        if rb.state is State.SUCCEEDED and rb.finished_at is not None:
            since = rb.detected_at or rb.created_at
            self._recovery.labels(provider).observe((rb.finished_at - since).total_seconds())
