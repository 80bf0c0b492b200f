"""xsd:dateTimeStamp parsing and formatting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.identity.timestamps import InvalidTimestamp, format_timestamp, parse_timestamp


@given(st.datetimes(min_value=datetime(1, 1, 2), timezones=st.just(UTC)))
def test_round_trip_to_the_second(moment: datetime) -> None:
    """Formatting then parsing gives the same instant, to the second, for any year."""
    assert parse_timestamp(format_timestamp(moment)) == moment.replace(microsecond=0)


def test_offsets_are_normalised_to_utc() -> None:
    """A time with an offset is written as the same instant in UTC with Z."""
    moment = datetime(2026, 1, 31, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-01-31T12:00:00Z"


@pytest.mark.parametrize(
    "value", ["2026-01-31", "2026-01-31T12:00:00", "2026-13-01T00:00:00Z", "yesterday", 1700000000, None]
)
def test_refuses_values_without_date_time_and_zone(value: object) -> None:
    """Dates without a time, times without a zone, impossible dates and non-strings are refused."""
    with pytest.raises(InvalidTimestamp):
        parse_timestamp(value)


def test_refuses_naive_datetimes() -> None:
    """Formatting a datetime without a time zone is refused rather than guessed."""
    with pytest.raises(InvalidTimestamp):
        format_timestamp(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "value", ["2026-06-01T12:00:00+14:01", "2026-06-01T12:00:00-15:00", "2026-06-01T12:00:00+23:59"]
)
def test_refuses_zone_offsets_beyond_fourteen_hours(value: str) -> None:
    """XML Schema limits a time zone offset to 14:00 either way."""
    with pytest.raises(InvalidTimestamp, match="beyond 14:00"):
        parse_timestamp(value)


def test_twenty_four_hundred_is_the_end_of_the_day() -> None:
    """XML Schema 1.1: 24:00:00 is the next day's first instant; any other time in hour 24 is refused."""
    assert parse_timestamp("2026-12-31T24:00:00Z") == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_timestamp("2026-01-01T24:00:00.000+02:00") == parse_timestamp("2026-01-02T00:00:00+02:00")
    with pytest.raises(InvalidTimestamp, match="hour 24"):
        parse_timestamp("2026-01-01T24:00:01Z")


@pytest.mark.parametrize(
    "value", ["2026-06-01T12:00:00+13:99", "2026-06-01T12:00:00+00:99", "2026-06-01T12:00:00-00:60"]
)
def test_refuses_zone_offsets_with_minutes_beyond_fifty_nine(value: str) -> None:
    """XML Schema's timezoneFrag allows minutes 00 to 59 only, whatever the hours."""
    with pytest.raises(InvalidTimestamp, match="minutes beyond 59"):
        parse_timestamp(value)


@pytest.mark.parametrize(
    ("value", "offset"),
    [("2026-06-01T12:00:00+14:00", 14 * 60), ("2026-06-01T12:00:00-13:59", -(13 * 60 + 59))],
)
def test_accepts_zone_offsets_up_to_fourteen_hours(value: str, offset: int) -> None:
    """The largest offsets XML Schema allows are read as they are written."""
    assert parse_timestamp(value).utcoffset() == timedelta(minutes=offset)
