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
