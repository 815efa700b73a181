"""The `/rollback` grammar: examples and properties (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands import (
    SUBCOMMANDS,
    USAGE,
    Backups,
    Cancel,
    Drill,
    Help,
    History,
    Kind,
    ListVersions,
    Report,
    RequestRollback,
    Restore,
    Status,
    parse,
)
from bot.config import RESERVED_SERVICE_NAMES
from bot.errors import UsageError
from bot.names import BACKUP_PATTERN, COMMIT_PATTERN, NAME_PATTERN, VERSION_PATTERN

names = st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda s: s not in SUBCOMMANDS)
versions = st.from_regex(VERSION_PATTERN, fullmatch=True)
# Backup names are whatever the pattern allows that is not also a service name.
backups = st.from_regex(BACKUP_PATTERN, fullmatch=True).filter(
    lambda s: not NAME_PATTERN.fullmatch(s)
)
commits = st.from_regex(COMMIT_PATTERN, fullmatch=True)
kinds: st.SearchStrategy[Kind] = st.sampled_from(["database", "redis"])
DUMP = "20240301120000.123Z_shop_pre-rollback.dump"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("backend v1.2.3", RequestRollback("backend", "v1.2.3")),
        ("backend", RequestRollback("backend")),
        ("backend v1.2.3 env=staging", RequestRollback("backend", "v1.2.3", "staging")),
        ("  backend   --dry-run  ", RequestRollback("backend", dry_run=True)),
        ("--dry-run env=prod backend 42", RequestRollback("backend", "42", "prod", True)),
        ("list backend", ListVersions("backend")),
        ("list backend env=staging", ListVersions("backend", "staging")),
        ("status", Status()),
        ("cancel rb-0a1b2c3d", Cancel("rb-0a1b2c3d")),
        ("backend commit=0a1b2c3", RequestRollback("backend", bad_commit="0a1b2c3")),
        (
            "backend commit=" + "f" * 40 + " env=prod --dry-run",
            RequestRollback("backend", None, "prod", True, "f" * 40),
        ),
        ("backups database", Backups("database")),
        ("backups redis shop env=staging", Backups("redis", "shop", "staging")),
        ("restore database", Restore("database")),
        ("restore redis shop", Restore("redis", "shop")),
        (f"restore database shop {DUMP}", Restore("database", "shop", DUMP)),
        (f"restore database {DUMP} env=prod", Restore("database", None, DUMP, "prod")),
        (f"env=prod restore database {DUMP} shop", Restore("database", "shop", DUMP, "prod")),
        ("backend detected=03:12", RequestRollback("backend", detected="03:12")),
        ("history", History()),
        ("history backend env=staging", History("backend", "staging")),
        ("report rb-0a1b2c3d", Report("rb-0a1b2c3d")),
        ("drill backend", Drill("backend")),
        ("drill backend env=staging", Drill("backend", "staging")),
        ("", Help()),
        ("help", Help()),
    ],
)
def test_examples(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("backend v1.2.3;rm -rf /", "'v1.2.3;rm' is not a valid version"),
        ("backend $(reboot)", "is not a valid version"),
        ("backend v1.2.3 extra", "Too many arguments: 'extra'"),
        ("backend v1.2.3 --force", "Unknown option '--force'"),
        ("backend v1.2.3 region=eu", "Unknown option 'region=eu'"),
        ("Backend v1", "'Backend' is not a valid service"),
        ("backend v1 env=Prod!", "is not a valid environment"),
        ("backend v1 env=a env=b", "env= is given twice"),
        ("backend vé1", "is not a valid version"),
        ("backend " + "v" * 300, "is not a valid version"),
        ("backend " + "v " * 300, "characters long"),
        ("cancel 123", "is not a valid rollback id"),
        ("cancel", "cancel takes exactly one rollback id"),
        ("list", "list takes exactly one service"),
        ("status now", "status takes no arguments"),
        ("--dry-run", "Name the service"),
        ("list backend --dry-run", "--dry-run does not apply to list"),
        ("backend commit=xyz1234", "'xyz1234' is not a valid commit"),
        ("backend commit=0A1B2C3", "is not a valid commit"),
        ("backend commit=0a1b2c", "is not a valid commit"),
        ("backend commit=" + "0" * 41, "is not a valid commit"),
        ("backend commit=0a1b2c3 commit=0a1b2c4", "commit= is given twice"),
        ("backend v1.2.3 commit=0a1b2c3", "Give a version or commit=SHA, not both"),
        ("list backend commit=0a1b2c3", "commit= does not apply to list"),
        ("restore database commit=0a1b2c3", "commit= does not apply to restore"),
        ("commit=0a1b2c3", "Name the service"),
        ("backups", "Say what: `backups database` or `backups redis`"),
        ("restore", "Say what: `restore database` or `restore redis`"),
        ("restore mysql", "restore takes database or redis, not 'mysql'"),
        ("restore Database", "restore takes database or redis"),
        ("restore database --dry-run", "--dry-run does not apply to restore"),
        ("backups database a b", "Two services given: 'a' and 'b'"),
        (f"backups database {DUMP}", "backups takes a service"),
        (f"restore database {DUMP} {DUMP}", "Two backups given"),
        ("restore database shop ../etc/passwd", "'../etc/passwd' is neither a service"),
        ("restore database .hidden.dump", "is neither a service"),
        ("restore database dump;rm", "is neither a service"),
        ("restore database " + "B" * 129, "is neither a service"),
        ("restore redis shop x=1", "Unknown option 'x=1'"),
        ("backend detected=3:12", "'3:12' is not a time like 03:12"),
        ("backend detected=24:00", "is not a time like 03:12"),
        ("backend detected=03:12 detected=03:13", "detected= is given twice"),
        ("history detected=03:12", "detected= does not apply to history"),
        ("history a b", "history takes at most one service"),
        ("report", "report takes exactly one rollback id"),
        ("report rb-0a1b2c3d env=prod", "report takes exactly one rollback id"),
        ("report 42", "is not a valid rollback id"),
        ("drill", "drill takes exactly one service"),
        ("drill backend --dry-run", "--dry-run does not apply to drill"),
    ],
)
def test_bad_input_says_what_is_wrong_and_shows_usage(text: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert says in caught.value.message
    assert USAGE in caught.value.message


def test_long_tokens_are_shortened_in_messages() -> None:
    with pytest.raises(UsageError) as caught:
        parse("backend " + "x;" * 100)
    first_line = caught.value.message.splitlines()[0]
    assert len(first_line) < 160


@given(service=names, version=st.none() | versions, env=st.none() | names, dry=st.booleans())
def test_round_trip(service: str, version: str | None, env: str | None, dry: bool) -> None:
    words = [service] + ([version] if version else [])
    words += [f"env={env}"] if env else []
    words += ["--dry-run"] if dry else []
    assert parse(" ".join(words)) == RequestRollback(service, version, env, dry)


@given(
    restore=st.booleans(),
    kind=kinds,
    service=st.none() | names,
    backup=st.none() | backups,
    env=st.none() | names,
    order=st.permutations(range(3)),
)
def test_restore_words_round_trip(
    restore: bool,
    kind: Kind,
    service: str | None,
    backup: str | None,
    env: str | None,
    order: list[int],
) -> None:
    head = "restore" if restore else "backups"
    backup = backup if restore else None
    extra = [service, backup, f"env={env}" if env else None]
    words = [head, kind] + [w for i in order if (w := extra[i])]
    expected = Restore(kind, service, backup, env) if restore else Backups(kind, service, env)
    assert parse(" ".join(words)) == expected


@given(service=names, commit=commits, env=st.none() | names)
def test_commit_round_trip(service: str, commit: str, env: str | None) -> None:
    text = f"{service} commit={commit}" + (f" env={env}" if env else "")
    assert parse(text) == RequestRollback(service, None, env, False, commit)


def test_detected_is_today_or_yesterday_in_utc() -> None:
    asked = RequestRollback("backend", detected="23:50")
    just_after_midnight = datetime(2026, 11, 25, 0, 10, tzinfo=UTC)
    assert asked.detected_at(just_after_midnight) == datetime(2026, 11, 24, 23, 50, tzinfo=UTC)
    evening = datetime(2026, 11, 25, 23, 55, tzinfo=UTC)
    assert asked.detected_at(evening) == datetime(2026, 11, 25, 23, 50, tzinfo=UTC)
    assert RequestRollback("backend").detected_at(evening) is None


def test_subcommands_cannot_be_service_names() -> None:
    assert SUBCOMMANDS <= RESERVED_SERVICE_NAMES


@given(st.text(max_size=600))
def test_any_text_parses_or_raises_usage_error(text: str) -> None:
    try:
        command = parse(text)
    except UsageError as exc:
        assert "Usage:" in exc.message
        return
    if isinstance(command, RequestRollback):
        assert NAME_PATTERN.fullmatch(command.service)
        assert command.version is None or VERSION_PATTERN.fullmatch(command.version)
        assert command.environment is None or NAME_PATTERN.fullmatch(command.environment)
        assert command.bad_commit is None or COMMIT_PATTERN.fullmatch(command.bad_commit)
    if isinstance(command, Backups | Restore):
        assert command.service is None or NAME_PATTERN.fullmatch(command.service)
        assert command.environment is None or NAME_PATTERN.fullmatch(command.environment)
    if isinstance(command, Restore) and command.backup is not None:
        assert BACKUP_PATTERN.fullmatch(command.backup)
        assert "/" not in command.backup and not command.backup.startswith(".")


@given(st.text(alphabet=";|&$`'\"<>\\(){}*?! \n", min_size=1, max_size=20), names)
def test_shell_metacharacters_never_reach_a_version(junk: str, service: str) -> None:
    try:
        command = parse(f"{service} v1{junk}")
    except UsageError:
        return
    assert isinstance(command, RequestRollback)
    assert command.version is None or not set(command.version) & set(";|&$`'\"<>\\(){}*?! ")


@given(st.text(alphabet="./\\;|&$`'\"<>(){}*?! \n~", min_size=1, max_size=20))
def test_paths_and_shell_metacharacters_never_reach_a_backup(junk: str) -> None:
    try:
        command = parse(f"restore database shop 2024{junk}.dump")
    except UsageError:
        return
    assert isinstance(command, Restore)
    assert command.backup is None or not set(command.backup) & set("/\\;|&$`'\"<>(){}*?! ~")


def test_an_echoed_word_cannot_mention_anyone() -> None:
    with pytest.raises(UsageError) as caught:
        parse("backend v1.2.3 <@U_OTHER> <!channel>")
    assert "<" not in caught.value.message and "‹@U_OTHER› ‹!channel›" in caught.value.message
