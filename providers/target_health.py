"""A target group's health as ELBv2's describe_target_health reports it.

States and reasons are AWS's own (ELBv2 API reference, TargetHealth): `initial` while
the first checks run (Elb.RegistrationInProgress, Elb.InitialHealthChecking), `unhealthy`
with Target.ResponseCodeMismatch, Target.Timeout, Target.FailedHealthChecks..., and
`unused` with Target.NotInUse when no listener rule uses the group, so it is not checked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

# (state, reason, description) of one target, as describe_target_health reports it.
TargetState = tuple[str, str | None, str | None]


@dataclass(frozen=True)
class Health:
    """A target group's registered targets and their health."""

    targets: tuple[TargetState, ...]
    # Each target as `id:port` (an IP address or instance id), in the order AWS lists them.
    ids: tuple[str, ...] = ()

    @property
    def healthy(self) -> int:
        """How many targets pass their health checks."""
        return sum(1 for state, _, _ in self.targets if state == "healthy")

    @property
    def settling(self) -> bool:
        """Tell whether some targets still wait for their first health checks."""
        return any(state == "initial" for state, _, _ in self.targets)

    @property
    def not_in_use(self) -> bool:
        """Tell whether AWS skips the checks because no listener rule uses the group."""
        return any(reason == "Target.NotInUse" for _, reason, _ in self.targets)

    def text(self, *, skip_healthy: bool = False) -> str:
        """Count targets by state, each with AWS's reason and description."""
        if not self.targets:
            return "no registered targets"
        counts = Counter(t for t in self.targets if not (skip_healthy and t[0] == "healthy"))
        parts = []
        for (state, reason, description), n in sorted(counts.items(), key=lambda i: str(i[0])):
            why = ": ".join(p for p in (reason, description) if p)
            parts.append(f"{n} {state} ({why})" if why else f"{n} {state}")
        return ", ".join(parts)


def partly_healthy(label: str, health: Health) -> list[str]:
    """Warn when only some of the group's targets are healthy."""
    total = len(health.targets)
    if health.healthy == total:
        return []
    ones = "one takes" if health.healthy == 1 else "ones take"
    return [
        f"Only {health.healthy} of {total} targets of {label} is healthy; the others: "
        f"{health.text(skip_healthy=True)}. The healthy {ones} all traffic."
    ]
