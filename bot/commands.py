"""The `/rollback` command grammar: a pure parser from text to a typed command."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from bot.errors import UsageError
from bot.names import (
    BACKUP_PATTERN,
    COMMIT_PATTERN,
    NAME_PATTERN,
    ROLLBACK_ID_PATTERN,
    VERSION_PATTERN,
)
from bot.text import one_line

USAGE = """\
/rollback SERVICE [VERSION] [env=ENV] [--dry-run]   roll SERVICE back (no VERSION: previous stable)
/rollback SERVICE commit=SHA [env=ENV] [--dry-run]  revert that one bad commit (git)
  … detected=HH:MM                                  when the issue was seen (UTC; default: now)
/rollback list SERVICE [env=ENV]                    list versions SERVICE can roll back to
/rollback backups database|redis [SERVICE] [env=ENV]
                                                    list the backups a restore can use
/rollback restore database|redis [SERVICE] [BACKUP] [env=ENV]
                                                    restore a backup (no BACKUP: the latest)
/rollback history [SERVICE] [env=ENV]               recent rollbacks and drills
/rollback report ID                                 the incident report of a rollback
/rollback drill SERVICE [env=ENV]                   the quarterly drill (never protected)
/rollback status                                    rollbacks in flight, locks, monitoring
/rollback cancel ID                                 cancel a rollback that has not started
/rollback unfreeze SERVICE [env=ENV]                let the rolled-back version be deployed again
/rollback help                                      this help"""

MAX_TEXT = 500

Kind = Literal["database", "redis"]
KINDS: dict[str, Kind] = {"database": "database", "redis": "redis"}
SUBCOMMANDS = frozenset(
    {
        "help",
        "status",
        "cancel",
        "list",
        "backups",
        "restore",
        "history",
        "report",
        "drill",
        "unfreeze",
    }
)
DETECTED = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


@dataclass(frozen=True)
class RequestRollback:
    """Roll a service back (to a version, or by reverting one bad commit)."""

    service: str
    version: str | None = None
    environment: str | None = None
    dry_run: bool = False
    bad_commit: str | None = None
    detected: str | None = None

    def detected_at(self, now: datetime) -> datetime | None:
        """Return when the issue was seen: today at `detected` (UTC), or yesterday if later."""
        if self.detected is None:
            return None
        hours, minutes = map(int, self.detected.split(":"))
        seen = now.astimezone(UTC).replace(hour=hours, minute=minutes, second=0, microsecond=0)
        return seen - timedelta(days=1) if seen > now else seen


@dataclass(frozen=True)
class ListVersions:
    """List the versions a service can roll back to."""

    service: str
    environment: str | None = None


@dataclass(frozen=True)
class Backups:
    """List the backups of a database or a Redis."""

    kind: Kind
    service: str | None = None
    environment: str | None = None


@dataclass(frozen=True)
class Restore:
    """Restore a backup of a database or a Redis (the latest fitting one when none is named)."""

    kind: Kind
    service: str | None = None
    backup: str | None = None
    environment: str | None = None


@dataclass(frozen=True)
class History:
    """List recent rollbacks and drills, of one service or all."""

    service: str | None = None
    environment: str | None = None


@dataclass(frozen=True)
class Report:
    """Render a rollback's incident report again, with its latest state."""

    rollback_id: str


@dataclass(frozen=True)
class Drill:
    """Run the guide's rollback drill on a non-production environment."""

    service: str
    environment: str | None = None


@dataclass(frozen=True)
class Status:
    """Show rollbacks in flight and held locks."""


@dataclass(frozen=True)
class Cancel:
    """Cancel a rollback that has not started."""

    rollback_id: str


@dataclass(frozen=True)
class Unfreeze:
    """End the freeze that keeps a rolled-back version out of a service environment."""

    service: str
    environment: str | None = None


@dataclass(frozen=True)
class Help:
    """Show the usage."""


Command = (
    RequestRollback
    | ListVersions
    | Backups
    | Restore
    | History
    | Report
    | Drill
    | Status
    | Cancel
    | Unfreeze
    | Help
)


def shown(value: str, limit: int = 40) -> str:
    """Quote a user's token for an error message: one short line that cannot mention."""
    # Look-alike brackets: echoed in a reply, the token never becomes a mention or link.
    return repr(one_line(value, limit).replace("<", "‹").replace(">", "›"))


def _fail(problem: str) -> UsageError:
    return UsageError(f"{problem}\n\nUsage:\n{USAGE}")


NAMES_ALLOWED = "lowercase letters, digits, '-' and '_'"
BACKUPS_ALLOWED = "letters, digits, '.', '_' and '-', at most 128, not starting with '.' or '-'"
PATTERNS = {
    "service": (NAME_PATTERN, NAMES_ALLOWED),
    "environment": (NAME_PATTERN, NAMES_ALLOWED),
    "version": (VERSION_PATTERN, "letters, digits, '.', '_', '+' and '-', at most 128"),
    "rollback id": (ROLLBACK_ID_PATTERN, "like rb-1a2b3c4d"),
    "commit": (COMMIT_PATTERN, "7 to 40 lowercase hex digits of its sha"),
}


def _check(pattern_name: str, value: str) -> str:
    pattern, allowed = PATTERNS[pattern_name]
    if not pattern.fullmatch(value):
        raise _fail(f"{shown(value)} is not a valid {pattern_name} ({allowed}).")
    return value


@dataclass
class _Words:
    """The words of a command, options taken out."""

    positional: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    environment: str | None = None
    commit: str | None = None
    detected: str | None = None
    dry_run: bool = False


def _split_options(words: list[str]) -> _Words:
    """Separate `env=ENV`, `commit=SHA`, `--dry-run` and unknown options from positional words."""
    found = _Words()
    for word in words:
        if word.startswith("env="):
            if found.environment is not None:
                raise _fail("env= is given twice.")
            found.environment = _check("environment", word.removeprefix("env="))
        elif word.startswith("commit="):
            if found.commit is not None:
                raise _fail("commit= is given twice.")
            found.commit = _check("commit", word.removeprefix("commit="))
        elif word.startswith("detected="):
            if found.detected is not None:
                raise _fail("detected= is given twice.")
            found.detected = word.removeprefix("detected=")
            if not DETECTED.fullmatch(found.detected):
                raise _fail(f"{shown(found.detected)} is not a time like 03:12 (UTC, 24-hour).")
        elif word == "--dry-run":
            found.dry_run = True
        elif word.startswith("-") or "=" in word:
            found.unknown.append(word)
        else:
            found.positional.append(word)
    return found


def _reject_unknown(unknown: list[str]) -> None:
    if unknown:
        raise _fail(
            f"Unknown option {shown(unknown[0])}; only env=ENV, commit=SHA, detected=HH:MM "
            "and --dry-run exist."
        )


def parse(text: str) -> Command:
    """Parse the text after `/rollback`; raise UsageError saying what is wrong."""
    if len(text) > MAX_TEXT:
        raise _fail(f"The command is {len(text)} characters long; at most {MAX_TEXT}.")
    words = _split_options(text.split())
    if not words.positional:
        _reject_unknown(words.unknown)
        if words.environment or words.dry_run or words.commit or words.detected:
            raise _fail("Name the service to roll back.")
        return Help()
    command = _parse_words(words.positional[0], words.positional[1:], words)
    _reject_unknown(words.unknown)
    return command


def _parse_words(head: str, args: list[str], words: _Words) -> Command:
    environment, dry_run = words.environment, words.dry_run
    if head in SUBCOMMANDS and words.commit:
        raise _fail(f"commit= does not apply to {head}; it goes with /rollback SERVICE.")
    if head in SUBCOMMANDS and words.detected:
        raise _fail(f"detected= does not apply to {head}; it goes with /rollback SERVICE.")
    if head in {"help", "status"}:
        if args or environment or dry_run:
            raise _fail(f"{head} takes no arguments.")
        return Help() if head == "help" else Status()
    if head in SUBCOMMANDS and dry_run:
        raise _fail(f"--dry-run does not apply to {head}.")
    if head == "cancel":
        if len(args) != 1 or environment:
            raise _fail("cancel takes exactly one rollback id.")
        return Cancel(_check("rollback id", args[0]))
    if head == "list":
        if len(args) != 1:
            raise _fail("list takes exactly one service.")
        return ListVersions(_check("service", args[0]), environment)
    if head in {"backups", "restore"}:
        return _parse_restore(head, args, environment)
    if head == "history":
        if len(args) > 1:
            raise _fail("history takes at most one service.")
        return History(_check("service", args[0]) if args else None, environment)
    if head == "report":
        if len(args) != 1 or environment:
            raise _fail("report takes exactly one rollback id.")
        return Report(_check("rollback id", args[0]))
    if head == "drill":
        if len(args) != 1:
            raise _fail("drill takes exactly one service.")
        return Drill(_check("service", args[0]), environment)
    if head == "unfreeze":
        if len(args) != 1:
            raise _fail("unfreeze takes exactly one service.")
        return Unfreeze(_check("service", args[0]), environment)
    service = _check("service", head)
    version = _check("version", args[0]) if args else None
    if len(args) > 1:
        raise _fail(f"Too many arguments: {shown(' '.join(args[1:]))}.")
    if version and words.commit:
        raise _fail("Give a version or commit=SHA, not both.")
    return RequestRollback(service, version, environment, dry_run, words.commit, words.detected)


def _parse_restore(head: str, args: list[str], environment: str | None) -> Backups | Restore:
    """Parse `backups|restore database|redis [SERVICE] [BACKUP]`."""
    if not args:
        raise _fail(f"Say what: `{head} database` or `{head} redis`.")
    kind = KINDS.get(args[0])
    if kind is None:
        raise _fail(f"{head} takes database or redis, not {shown(args[0])}.")
    service: str | None = None
    backup: str | None = None
    for word in args[1:]:
        if NAME_PATTERN.fullmatch(word):
            if service is not None:
                raise _fail(f"Two services given: {shown(service)} and {shown(word)}.")
            service = word
        elif head == "backups":
            raise _fail(f"backups takes a service ({NAMES_ALLOWED}), not {shown(word)}.")
        elif not BACKUP_PATTERN.fullmatch(word):
            raise _fail(
                f"{shown(word)} is neither a service ({NAMES_ALLOWED}) nor a backup name "
                f"({BACKUPS_ALLOWED})."
            )
        elif backup is not None:
            raise _fail(f"Two backups given: {shown(backup)} and {shown(word)}.")
        else:
            backup = word
    if head == "backups":
        return Backups(kind, service, environment)
    return Restore(kind, service, backup, environment)
