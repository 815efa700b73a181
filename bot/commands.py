"""The `/rollback` command grammar: a pure parser from text to a typed command."""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import UsageError
from bot.names import NAME_PATTERN, ROLLBACK_ID_PATTERN, VERSION_PATTERN

USAGE = """\
/rollback SERVICE [VERSION] [env=ENV] [--dry-run]   roll SERVICE back (no VERSION: previous stable)
/rollback list SERVICE [env=ENV]                    list versions SERVICE can roll back to
/rollback status                                    rollbacks in flight and held locks
/rollback cancel ID                                 cancel a rollback that has not started
/rollback help                                      this help"""

MAX_TEXT = 500


@dataclass(frozen=True)
class RequestRollback:
    """Roll a service back."""

    service: str
    version: str | None = None
    environment: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class ListVersions:
    """List the versions a service can roll back to."""

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
class Help:
    """Show the usage."""


Command = RequestRollback | ListVersions | Status | Cancel | Help


def shown(value: str, limit: int = 40) -> str:
    """Quote a user's token for an error message, shortened so it cannot flood a reply."""
    text = value if len(value) <= limit else value[: limit - 1] + "…"
    return repr(text)


def _fail(problem: str) -> UsageError:
    return UsageError(f"{problem}\n\nUsage:\n{USAGE}")


def _check(pattern_name: str, value: str) -> str:
    patterns = {
        "service": (NAME_PATTERN, "lowercase letters, digits, '-' and '_'"),
        "environment": (NAME_PATTERN, "lowercase letters, digits, '-' and '_'"),
        "version": (VERSION_PATTERN, "letters, digits, '.', '_', '+' and '-', at most 128"),
        "rollback id": (ROLLBACK_ID_PATTERN, "like rb-1a2b3c4d"),
    }
    pattern, allowed = patterns[pattern_name]
    if not pattern.fullmatch(value):
        raise _fail(f"{shown(value)} is not a valid {pattern_name} ({allowed}).")
    return value


def _split_options(words: list[str]) -> tuple[list[str], str | None, bool, list[str]]:
    """Separate `env=ENV`, `--dry-run` and unknown options from positional words."""
    positional: list[str] = []
    unknown: list[str] = []
    environment: str | None = None
    dry_run = False
    for word in words:
        if word.startswith("env="):
            if environment is not None:
                raise _fail("env= is given twice.")
            environment = _check("environment", word.removeprefix("env="))
        elif word == "--dry-run":
            dry_run = True
        elif word.startswith("-") or "=" in word:
            unknown.append(word)
        else:
            positional.append(word)
    return positional, environment, dry_run, unknown


def _reject_unknown(unknown: list[str]) -> None:
    if unknown:
        raise _fail(f"Unknown option {shown(unknown[0])}; only env=ENV and --dry-run exist.")


def parse(text: str) -> Command:
    """Parse the text after `/rollback`; raise UsageError saying what is wrong."""
    if len(text) > MAX_TEXT:
        raise _fail(f"The command is {len(text)} characters long; at most {MAX_TEXT}.")
    positional, environment, dry_run, unknown = _split_options(text.split())
    if not positional:
        _reject_unknown(unknown)
        if environment or dry_run:
            raise _fail("Name the service to roll back.")
        return Help()
    head, args = positional[0], positional[1:]
    command = _parse_words(head, args, environment, dry_run)
    _reject_unknown(unknown)
    return command


def _parse_words(head: str, args: list[str], environment: str | None, dry_run: bool) -> Command:
    if head in {"help", "status"}:
        if args or environment or dry_run:
            raise _fail(f"{head} takes no arguments.")
        return Help() if head == "help" else Status()
    if head in {"cancel", "list"} and dry_run:
        raise _fail(f"--dry-run does not apply to {head}.")
    if head == "cancel":
        if len(args) != 1 or environment:
            raise _fail("cancel takes exactly one rollback id.")
        return Cancel(_check("rollback id", args[0]))
    if head == "list":
        if len(args) != 1:
            raise _fail("list takes exactly one service.")
        return ListVersions(_check("service", args[0]), environment)
    service = _check("service", head)
    version = _check("version", args[0]) if args else None
    if len(args) > 1:
        raise _fail(f"Too many arguments: {shown(' '.join(args[1:]))}.")
    return RequestRollback(service, version, environment, dry_run)
