"""The portal's URL converters: ``<int:...>`` route parameters that a database can always look up.

Werkzeug's own ``int`` converter matches ``\\d+``, which takes any Unicode digit (``/x/\\u0661``,
ARABIC-INDIC DIGIT ONE, is 1) and any size, so an id beyond the id columns reached the database and
failed there (SQLite: ``OverflowError``; PostgreSQL: "integer out of range") as a 500.
:class:`RowIdConverter` replaces it for every route of the app (:func:`web.app.create_app` registers
it as ``int``): ASCII digits only, from 0 to :data:`MAX_ROW_ID` (the range of the portal's id columns
on both databases), or to the rule's own ``max`` (``<int(max=...):height>``, at most
:data:`MAX_ROUTE_INT`); any other segment matches no route, so the answer is a 404.
"""

from __future__ import annotations

from typing import Final

from werkzeug.routing import Map, ValidationError
from werkzeug.routing.converters import BaseConverter

__all__ = ["MAX_ROW_ID", "MAX_ROUTE_INT", "RowIdConverter"]

MAX_ROW_ID: Final = 2**31 - 1
"""The largest id a route takes by default: the portal's id columns are SQL ``INTEGER``, which is 32
bits on PostgreSQL (a larger number fails there with "integer out of range")."""
MAX_ROUTE_INT: Final = 2**63 - 1
"""The largest ``max`` a rule may give (a 64-bit signed integer: SQLite's INTEGER)."""


class RowIdConverter(BaseConverter):
    """A path segment of ASCII digits naming a whole number from 0 to ``max`` (:data:`MAX_ROW_ID`
    unless the rule says otherwise); anything else is no match."""

    regex = r"[0-9]{1,19}"
    weight = 50  # as werkzeug's number converters: before a rule's free-text segments

    def __init__(self, map: Map, max: int = MAX_ROW_ID) -> None:
        super().__init__(map)
        if type(max) is not int or not 0 <= max <= MAX_ROUTE_INT:
            raise ValueError(f"a route number's max must be 0 to {MAX_ROUTE_INT}, not {max!r}")
        self.max = max

    def to_python(self, value: str) -> int:
        """The number, or :class:`ValidationError` (no match) when it is above ``max``."""
        number = int(value)
        if number > self.max:
            raise ValidationError()
        return number

    def to_url(self, value: int) -> str:
        """The number in ASCII digits."""
        number = int(value)
        if not 0 <= number <= self.max:
            raise ValueError(f"{number} is not a route number (0 to {self.max})")
        return str(number)
