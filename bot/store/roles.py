"""The store by role, as the engine hands it out: each module asks for the part it uses."""

from __future__ import annotations

from bot.store.base import DeliveryStore, JobStore, LeaseStore, RecordStore, RollbackStore, Store


class StoreRoles:
    """The engine's store, seen through one role at a time (mixed into Engine)."""

    store: Store

    @property
    def rollbacks(self) -> RollbackStore:
        """Rollbacks and their transitions."""
        return self.store

    @property
    def records(self) -> RecordStore:
        """The audit log, timelines and checklist marks."""
        return self.store

    @property
    def lease_table(self) -> LeaseStore:
        """The service locks as fenced leases (`leases` is what this process holds)."""
        return self.store

    @property
    def deliveries(self) -> DeliveryStore:
        """What is sent to Slack once, and the Slack requests seen."""
        return self.store

    @property
    def jobs(self) -> JobStore:
        """Scheduled jobs."""
        return self.store
