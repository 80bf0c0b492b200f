"""What enrolment forms and the token API accept: device profiles, token counts, lifetimes, CSV batches.

A device profile is a model, a firmware version and further claims (attributes), given as
``key=value`` lines or as one JSON object. A CSV batch has a header row with ``model`` and
``firmware`` and any further columns as attributes (an empty cell leaves that attribute out), at most
:data:`MAX_CSV_COLUMNS` columns in all; each row becomes one provisioning token. Every input is
checked before anything is created: a refusal names the field, or the CSV row, that was wrong.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from web.enrolment_records import DeviceProfile, EnrolmentError

__all__ = [
    "MAX_TOKENS",
    "MAX_VALIDITY_HOURS",
    "MAX_CSV_COLUMNS",
    "FormError",
    "CsvErrors",
    "parse_profile",
    "parse_attributes",
    "parse_count",
    "parse_hours",
    "parse_csv",
]

MAX_TOKENS: Final = 10_000
"""The most provisioning tokens one request creates."""
MAX_VALIDITY_HOURS: Final = 24 * 365
"""The longest lifetime of a provisioning token (a year)."""
_MAX_TEXT: Final = 200
_MAX_ATTRIBUTES: Final = 50
MAX_CSV_COLUMNS: Final = 2 + 1000
"""The most columns a CSV batch's header names: ``model``, ``firmware`` and 1,000 attribute columns
(a mixed fleet's sheet; each row fills at most the 50 attributes a device profile holds, an empty
cell leaving that attribute out)."""


@dataclass(frozen=True, slots=True)
class FormError(Exception):
    """One input ``field`` was refused, for the reason ``message``."""

    field: str
    message: str

    def __str__(self) -> str:
        return self.message


class CsvErrors(Exception):
    """A CSV batch was refused; ``errors`` lists ``(row number, reason)`` (the header is row 1)."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"row {row}: {reason}" for row, reason in errors))


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FormError(name, f"give the device's {name}")
    text = value.strip()
    if len(text) > _MAX_TEXT or not text.isprintable():
        raise FormError(name, f"the {name} must be printable text of at most {_MAX_TEXT} characters")
    return text


def parse_attributes(text: str) -> dict[str, Any]:
    """Attributes from ``key=value`` lines (blank lines ignored) or from one JSON object."""
    stripped = text.strip()
    if not stripped:
        return {}
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except ValueError as exc:
            raise FormError("attributes", f"the attributes are not valid JSON: {exc}") from None
        except RecursionError:
            raise FormError("attributes", "the attributes are nested too deeply") from None
        if not isinstance(value, dict):
            raise FormError("attributes", "the attributes must be one JSON object")
        attributes: dict[str, Any] = value
    else:
        attributes = {}
        for number, line in enumerate(stripped.splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, item = line.partition("=")
            if not sep or not key.strip():
                raise FormError("attributes", f"line {number} is not key=value: {line.strip()[:40]!r}")
            if key.strip() in attributes:
                raise FormError("attributes", f"line {number} repeats the attribute {key.strip()!r}")
            attributes[key.strip()] = item.strip()
    return _checked_attributes(attributes)


def _checked_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    if len(attributes) > _MAX_ATTRIBUTES:
        raise FormError("attributes", f"give at most {_MAX_ATTRIBUTES} attributes")
    for key in attributes:
        if not key or len(key) > 64 or not key.isprintable():
            raise FormError("attributes", f"attribute name {key[:70]!r} must be 1 to 64 printable characters")
    return dict(attributes)


def parse_profile(model: object, firmware: object, attributes: Mapping[str, Any] | str) -> DeviceProfile:
    """A device profile from form or JSON input; :class:`FormError` names the field refused."""
    values = parse_attributes(attributes) if isinstance(attributes, str) else _checked_attributes(attributes)
    try:
        return DeviceProfile(_text(model, "model"), _text(firmware, "firmware"), values)
    except EnrolmentError as exc:
        raise FormError("attributes", str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise FormError("attributes", f"the attributes cannot be credential claims: {exc}") from None


def _bounded(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise FormError(name, f"{name} must be a whole number from {low:,} to {high:,}")
    if isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "")
        number = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None
    else:
        number = value if isinstance(value, int) else None
    if number is None or not low <= number <= high:
        raise FormError(name, f"{name} must be a whole number from {low:,} to {high:,}")
    return number


def parse_count(value: object) -> int:
    """How many tokens to create: 1 to :data:`MAX_TOKENS`."""
    return _bounded(value, "count", 1, MAX_TOKENS)


def parse_hours(value: object) -> int:
    """A token lifetime in hours: 1 to :data:`MAX_VALIDITY_HOURS`."""
    return _bounded(value, "validity_hours", 1, MAX_VALIDITY_HOURS)


def parse_csv(data: bytes) -> list[DeviceProfile]:
    """One profile per CSV row; :class:`CsvErrors` lists every refused row, and nothing is returned."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvErrors([(1, f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise CsvErrors([(1, "the file is empty: it needs a header row with model and firmware")]) from None
    except csv.Error as exc:
        raise CsvErrors([(1, f"not CSV: {exc}")]) from None
    if len(header) > MAX_CSV_COLUMNS:  # before anything else looks at the names
        many = f"the header names {len(header):,} columns, more than the {MAX_CSV_COLUMNS:,} allowed"
        raise CsvErrors(
            [(1, f"{many} (model, firmware and at most {MAX_CSV_COLUMNS - 2:,} attribute columns)")]
        )
    problems = [n for n in ("model", "firmware") if n not in header]
    duplicates = sorted(n for n, times in Counter(header).items() if times > 1)
    if problems or duplicates or "" in header:
        reasons = [f"the header needs a {n!r} column" for n in problems]
        reasons += [f"the header repeats {n!r}" for n in duplicates]
        reasons += ["the header has an unnamed column"] if "" in header else []
        raise CsvErrors([(1, "; ".join(reasons))])
    profiles: list[DeviceProfile] = []
    errors: list[tuple[int, str]] = []
    try:
        for cells in reader:
            row = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(profiles) + len(errors) >= MAX_TOKENS:
                errors.append((row, f"a batch holds at most {MAX_TOKENS:,} devices"))
                break
            if len(cells) != len(header):
                errors.append((row, f"{len(cells)} cells, but the header names {len(header)} columns"))
                continue
            values = dict(zip(header, (cell.strip() for cell in cells), strict=True))
            model, firmware = values.pop("model"), values.pop("firmware")
            try:
                profiles.append(parse_profile(model, firmware, {k: v for k, v in values.items() if v}))
            except FormError as exc:
                errors.append((row, exc.message))
    except csv.Error as exc:
        errors.append((reader.line_num, f"not CSV: {exc}"))
    if errors:
        raise CsvErrors(errors)
    if not profiles:
        raise CsvErrors([(2, "the file has a header but no devices")])
    return profiles
