"""The lines of a preflight report several providers write alike: checks, commits, direction."""

from __future__ import annotations

from datetime import datetime

from providers.capabilities import PreflightCheck, Verdict

SHORT_SHA = 7


def passed(name: str, why: str) -> PreflightCheck:
    """Return a passing check."""
    return PreflightCheck(name, Verdict.PASS, why)


def warned(name: str, why: str) -> PreflightCheck:
    """Return a check that passed with a warning."""
    return PreflightCheck(name, Verdict.WARN, why)


def failed(name: str, why: str) -> PreflightCheck:
    """Return a failing check."""
    return PreflightCheck(name, Verdict.FAIL, why)


def one_line(text: str, limit: int = 200) -> str:
    """Squeeze text onto one short line (a platform's message may span several)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def commit_change(
    current_sha: str, current_branch: str, target_sha: str, target_branch: str
) -> str | None:
    """Say which commit runs now and which would, e.g. `commit 1a2b3c4 -> 9f8e7d6 (main)`."""
    if not current_sha and not target_sha:
        return None
    before, after = current_sha[:SHORT_SHA] or "unknown", target_sha[:SHORT_SHA] or "unknown"
    if current_sha == target_sha:
        return f"commit {after} unchanged" + (f" ({target_branch})" if target_branch else "")
    if current_branch == target_branch:
        return f"commit {before} -> {after}" + (f" ({target_branch})" if target_branch else "")
    return f"commit {before}{_branch(current_branch)} -> {after}{_branch(target_branch)}"


def direction(
    current: str, current_at: datetime | None, target: str, target_at: datetime | None
) -> str | None:
    """Say when the target is newer than what runs: that rolls forward, not back."""
    if current_at is None or target_at is None or target_at <= current_at:
        return None
    return f"rolls forward: {target} is newer than {current}"


def _branch(name: str) -> str:
    return f" ({name})" if name else ""
