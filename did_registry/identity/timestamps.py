"""XML Schema ``dateTimeStamp`` values, as VC 2.0 (``validFrom``, ``validUntil``), Data Integrity
(``created``, ``expires``) and DID Resolution metadata use them: an ISO 8601 date and time that
must carry a time zone. Trellis writes them in UTC with a ``Z`` and whole seconds.

Read as XML Schema 1.1 defines them: a zone offset is at most 14:00 either way, with minutes 00 to
59, and ``24:00:00`` is midnight at the end of the day (the next day's ``00:00:00``). Years beyond
9999 (valid in XML Schema) are refused: no date in this system lies that far."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["InvalidTimestamp", "format_timestamp", "parse_timestamp"]

# xsd:dateTimeStamp lexical form: yyyy-mm-ddThh:mm:ss(.s+)?(Z|(+|-)hh:mm)
_DATETIME_STAMP = re.compile(
    r"-?[0-9]{4,}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)


class InvalidTimestamp(ValueError):
    """A value is not an XML Schema dateTimeStamp (date, time and time zone)."""


def parse_timestamp(value: object) -> datetime:
    """Parse an ``xsd:dateTimeStamp`` into an aware :class:`datetime`; raise :class:`InvalidTimestamp`."""
    if not isinstance(value, str) or _DATETIME_STAMP.fullmatch(value) is None:
        raise InvalidTimestamp(f"{value!r} is not a dateTimeStamp (e.g. 2026-01-31T12:00:00Z)")
    date, _, time = value.partition("T")
    clock, zone = (time[:-1], "Z") if time.endswith("Z") else (time[:-6], time[-6:])
    if zone != "Z":  # timezoneFrag: (0d|1[0-3]):[0-5]d or 14:00, compared as numbers
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if minutes > 59:
            raise InvalidTimestamp(f"{value!r} has a time zone offset with minutes beyond 59")
        if (hours, minutes) > (14, 0):
            raise InvalidTimestamp(f"{value!r} has a time zone offset beyond 14:00")
    try:
        if clock.startswith("24:"):  # XML Schema 1.1: 24:00:00 is the first instant of the next day
            if clock[:8] != "24:00:00" or clock[9:].strip("0"):
                raise ValueError("hour 24 is only 24:00:00, the end of a day")
            return datetime.fromisoformat(f"{date}T00:00:00{zone}") + timedelta(days=1)
        return datetime.fromisoformat(value)
    except (ValueError, OverflowError) as exc:
        raise InvalidTimestamp(f"{value!r} is not a valid date and time: {exc}") from None


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDThh:mm:ssZ`` in UTC, dropping sub-seconds."""
    if moment.tzinfo is None:
        raise InvalidTimestamp("a dateTimeStamp needs a time zone; got a naive datetime")
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}Z"  # strftime's %Y does not pad years before 1000
