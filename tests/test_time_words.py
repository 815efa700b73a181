"""Durations and time ranges as messages say them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.time_words import duration, time_range, zone


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.2, "less than a second"),
        (0.5, "1 second"),
        (1, "1 second"),
        (2.5, "3 seconds"),
        (3, "3 seconds"),
        (3.4, "3 seconds"),
        (59.4, "59 seconds"),
        (59.6, "1 min"),
        (60, "1 min"),
        (125, "2 min 05 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h"),
        (3725, "1 h 02 min"),
        (7 * 3600 + 59 * 60 + 59, "7 h 59 min"),
        (-5, "less than a second"),
    ],
)
def test_a_duration_in_words(seconds: float, said: str) -> None:
    assert duration(seconds) == said
    assert duration(timedelta(seconds=seconds)) == said


def at(day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2025, 12, day, hour, minute, second, tzinfo=UTC)


def test_a_range_within_one_minute_is_one_time() -> None:
    assert time_range(at(6, 19, 53, 2), at(6, 19, 53, 5)) == "at 19:53 UTC"


def test_a_range_within_one_day_is_two_times() -> None:
    assert time_range(at(6, 19, 53), at(6, 20, 10)) == "between 19:53 and 20:10 UTC"


def test_a_range_across_midnight_has_dates() -> None:
    assert time_range(at(6, 23, 50), at(7, 0, 20)) == (
        "between 23:50 on 6 Dec and 00:20 on 7 Dec UTC"
    )


def test_a_range_across_a_new_year_has_years() -> None:
    start = datetime(2025, 12, 31, 23, 50, tzinfo=UTC)
    assert time_range(start, start + timedelta(minutes=30)) == (
        "between 23:50 on 31 Dec 2025 and 00:20 on 1 Jan 2026 UTC"
    )


def test_a_timezone_shows_local_times_with_its_abbreviation() -> None:
    assert time_range(at(6, 18, 53), at(6, 19, 10), "Europe/Berlin") == (
        "between 19:53 and 20:10 CET"
    )


def test_a_timezone_can_move_the_range_across_midnight() -> None:
    # 22:50-23:20 UTC is one evening in UTC, and two days in Berlin.
    assert time_range(at(6, 22, 50), at(6, 23, 20)) == "between 22:50 and 23:20 UTC"
    assert time_range(at(6, 22, 50), at(6, 23, 20), "Europe/Berlin") == (
        "between 23:50 on 6 Dec and 00:20 on 7 Dec CET"
    )


def test_a_zone_without_an_abbreviation_is_said_as_an_offset() -> None:
    assert time_range(at(6, 12, 0), at(6, 12, 30), "America/Sao_Paulo") == (
        "between 09:00 and 09:30 UTC-03"
    )


def test_a_change_of_daylight_saving_time_names_both_zones() -> None:
    # Berlin went from CET to CEST at 01:00 UTC on 30 March 2025.
    start = datetime(2025, 3, 30, 0, 50, tzinfo=UTC)
    said = time_range(start, start + timedelta(minutes=30), "Europe/Berlin")
    assert said == "between 01:50 CET and 03:20 CEST"


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", None, "../../etc/passwd", "Europe/"])
def test_an_unknown_timezone_is_utc(name: str | None) -> None:
    assert zone(name) is UTC
    assert time_range(at(6, 19, 53), at(6, 20, 10), name) == "between 19:53 and 20:10 UTC"


def test_naive_times_are_utc() -> None:
    naive = datetime(2025, 12, 6, 19, 53)
    assert time_range(naive, naive + timedelta(minutes=17)) == "between 19:53 and 20:10 UTC"
