"""Preflight of a `helm` target: the exact revisions, whether the rollback can run, what changes.

Checks, by their stable names (a break-glass approval names the one it overrides):

- `helm-binary`: the helm CLI is there (with its version); fails when it is not.
- `release-idle`: fails while the newest revision is `pending-install`, `pending-upgrade`
  or `pending-rollback`: another helm command is at work, or one was killed midway.
- `revision-deployable`: fails for a target revision whose status is `failed` or
  `pending-*` (it never became ready); warns when the release's newest revision failed
  (the cluster holds part of that upgrade, which the rollback replaces); passes for a
  revision that was deployed successfully.

Changes: the chart and the app version from → to, and the names of the values that
differ between the two revisions (`helm get values --all`), compared by key path: a
value itself is never shown, for it may be a secret.
"""

from __future__ import annotations

from typing import Any

from providers.capabilities import Identity, PreflightCheck, Verdict
from providers.helm_history import GOOD, History, Revision


def identity(release: str, revision: Revision, name: str) -> Identity:
    """Name a revision by its version, and exactly by its number, chart and app version."""
    return Identity(version=name, exact=f"{release} revision {revision.number} ({revision.what()})")


def busy(release: str, history: History) -> str | None:
    """Why no rollback may start now, when the newest revision is pending."""
    newest = history.current
    if not newest.pending:
        return None
    since = f" since {newest.updated:%Y-%m-%d %H:%M:%S} UTC" if newest.updated else ""
    good = history.previous()
    by_hand = f" `helm rollback {release} {good.number}`" if good else " `helm rollback`"
    return (
        f"Release {release} is {newest.status} at revision {newest.number}{since}: another "
        "operation (install/upgrade/rollback) is in progress, and starting one now would race "
        "it. Wait for it to finish. If no helm command is running (a deploy was killed "
        f"midway), clear it by hand with{by_hand} once you have checked."
    )


def undeployable(revision: Revision) -> str | None:
    """Why a revision may not be rolled back to, when it never became ready."""
    if revision.status in GOOD:
        return None
    said = f" ({revision.first_line()})" if revision.first_line() else ""
    return (
        f"Revision {revision.number} is {revision.status}{said}: it never became ready, so "
        "rolling back to it would bring the failure back. Pick a revision that was deployed "
        "successfully (superseded)."
    )


def checks(release: str, history: History, target: Revision, binary: str) -> list[PreflightCheck]:
    """The checks read off the release's history and the helm binary."""
    found = [PreflightCheck("helm-binary", Verdict.PASS, f"helm found: {binary}.")]
    why_busy = busy(release, history)
    if why_busy:
        found.append(PreflightCheck("release-idle", Verdict.FAIL, why_busy))
    else:
        current = history.current
        found.append(
            PreflightCheck(
                "release-idle",
                Verdict.PASS,
                f"No operation in progress (revision {current.number} is {current.status}).",
            )
        )
    why_not = undeployable(target)
    if why_not:
        found.append(PreflightCheck("revision-deployable", Verdict.FAIL, why_not))
    elif history.current.status == "failed":
        text = (
            f"Revision {target.number} was deployed successfully; the newest, revision "
            f"{history.current.number}, failed ({history.current.first_line()}) and the rollback "
            "replaces what it applied."
        )
        found.append(PreflightCheck("revision-deployable", Verdict.WARN, text))
    else:
        text = f"Revision {target.number} was deployed successfully ({target.status})."
        found.append(PreflightCheck("revision-deployable", Verdict.PASS, text))
    return found


def missing_binary(why: str) -> PreflightCheck:
    """The failing `helm-binary` check."""
    return PreflightCheck("helm-binary", Verdict.FAIL, why)


def changes(current: Revision, target: Revision, now: Any, then: Any) -> list[str]:
    """Chart and app version from -> to, and the value names that differ (never a value)."""
    lines = [
        _from_to("chart", current.chart, target.chart),
        _from_to("app version", current.app_version or "none", target.app_version or "none"),
    ]
    before, after = _leaves(now), _leaves(then)
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    for word, keys in (
        ("changed", changed),
        ("added", sorted(after.keys() - before.keys())),
        ("removed", sorted(before.keys() - after.keys())),
    ):
        if keys:
            lines.append(f"values {word}: {', '.join(keys)}")
    if len(lines) == 2:
        lines.append("values: the same")
    return lines


def _from_to(label: str, now: str, then: str) -> str:
    return f"{label}: {now} -> {then}" if now != then else f"{label}: {now} (the same)"


def _leaves(values: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested values into dotted key paths; a list counts as one value."""
    if not isinstance(values, dict):
        return {prefix: values} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(_leaves(value, path))
        else:
            flat[path] = value
    return flat
