"""Freezing an ECS target: watch only, because ECS offers no setting that keeps a revision out.

What AWS documents, and why none of it is a freeze:

- The deployment circuit breaker (``deploymentConfiguration.deploymentCircuitBreaker``,
  rolling updates only) fails a deployment that cannot reach a steady state; with
  ``rollback`` on, ECS rolls the service back "to the last deployment that completed
  successfully". After a verified rollback that is the good revision: the breaker never
  brings the bad one back, and turning it off or on would not stop anyone's UpdateService
  with the bad revision either.
- UpdateService takes any ACTIVE task definition; no service setting refuses a revision.
- Deregistering the bad revision (INACTIVE) does refuse it for UpdateService, but AWS
  offers no way back to ACTIVE, so an unfreeze could not restore it; and pipelines
  usually register a new revision per deploy anyway.

So the freeze changes nothing on AWS: the engine watches the running revision instead.
"""

from __future__ import annotations

from providers.capabilities import FreezeRecord

ROLLING = (
    "ECS has no setting that keeps a task definition revision from being deployed again "
    "(its circuit breaker rolls back to the last completed deployment, {good} now, never "
    "to {bad})"
)
BLUE_GREEN = (
    "neither ECS nor the load balancer has a setting that keeps a revision or a target "
    "group from being switched to again"
)


class WatchOnlyFreeze:
    """The freeze of a target whose platform offers no setting to keep a version out."""

    # Why the platform offers nothing, with {bad} and {good} filled in.
    watch_only_because = ROLLING
    platform = "ECS"

    async def freeze(self, bad: str, good: str) -> FreezeRecord:
        """Change nothing on AWS; say that the bad version is only watched for."""
        why = self.watch_only_because.format(bad=bad, good=good)
        return FreezeRecord(action=f"watch only: {why}; a deploy of {bad} again shows as drift")

    async def unfreeze(self, record: FreezeRecord) -> str:
        """Nothing was changed, so nothing is put back."""
        return (
            f"Nothing to restore: the freeze was watch only ({self.platform} has no setting "
            "to undo)."
        )
