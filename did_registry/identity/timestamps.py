"""XML Schema ``dateTimeStamp`` values, as VC 2.0 (``validFrom``, ``validUntil``), Data Integrity
(``created``, ``expires``) and DID Resolution metadata use them: an ISO 8601 date and time that
must carry a time zone. Trellis writes them in UTC with a ``Z`` and whole seconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime

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
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidTimestamp(f"{value!r} is not a valid date and time: {exc}") from None


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDThh:mm:ssZ`` in UTC, dropping sub-seconds."""
    if moment.tzinfo is None:
        raise InvalidTimestamp("a dateTimeStamp needs a time zone; got a naive datetime")
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}Z"  # strftime's %Y does not pad years before 1000
