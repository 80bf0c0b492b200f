"""A CSV batch's header: at most ``MAX_CSV_COLUMNS`` columns (model, firmware and 1,000 attribute columns),
refused with a clear reason at row 1 before anything else looks at the names; repeated names are
found in one pass (``web.enrol_forms.parse_csv``)."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from tests.web.support import Browser
from web.enrol_forms import CsvErrors, parse_csv
from web.models import Role

MAX_CSV_COLUMNS = 1002
"""The cap: model, firmware and 1,000 attribute columns (each row fills at most 50)."""


def _csv(columns: int, filled: int = 50) -> bytes:
    """A file whose header names ``model``, ``firmware`` and attributes to ``columns`` columns in
    all, with one device row filling the first ``filled`` attributes (the others empty)."""
    names = ["model", "firmware"] + [f"a{n}" for n in range(columns - 2)]
    cells = ["TH-1", "2.4.1"] + ["v" if n < filled else "" for n in range(columns - 2)]
    return (",".join(names) + "\n" + ",".join(cells) + "\n").encode()


def _refusals(data: bytes) -> list[tuple[int, str]]:
    with pytest.raises(CsvErrors) as refused:
        parse_csv(data)
    return refused.value.errors


def test_a_header_over_the_cap_is_refused_at_row_one() -> None:
    """A header of 1,003 columns is refused as row 1, naming its count and the cap."""
    assert _refusals(_csv(MAX_CSV_COLUMNS + 1)) == [
        (
            1,
            "the header names 1,003 columns, more than the 1,002 allowed"
            " (model, firmware and at most 1,000 attribute columns)",
        )
    ]


def test_a_header_at_the_cap_is_accepted() -> None:
    """A header of 1,002 columns whose row fills 50 attributes makes a device with those 50."""
    [profile] = parse_csv(_csv(MAX_CSV_COLUMNS))
    assert len(profile.attributes) == 50


def test_a_mixed_fleet_sheet_with_sparse_rows_is_accepted() -> None:
    """60 attribute columns, each row filling 10 of them (a sheet for several models): accepted."""
    names = ["model", "firmware"] + [f"a{n}" for n in range(60)]
    rows = [["TH-1", "1.0"] + ["v" if n // 10 == k else "" for n in range(60)] for k in range(6)]
    data = "\n".join(",".join(r) for r in [names, *rows]).encode() + b"\n"
    assert [len(p.attributes) for p in parse_csv(data)] == [10] * 6


def test_a_very_wide_header_gets_the_cap_s_reason_alone() -> None:
    """A header of 5,000 columns, every attribute name repeated, is refused with the cap's one reason:
    no list of its repeated names (one line per name), nothing about its rows."""
    data = ("model,firmware," + ",".join(f"a{n % 2_499}" for n in range(4_998)) + "\n").encode()
    [(row, reason)] = _refusals(data)
    assert row == 1 and reason.startswith("the header names 5,000 columns, more than the 1,002 allowed")


def test_each_repeated_name_is_named_once() -> None:
    """Names repeated in the header are each reported once, in order."""
    assert _refusals(b"model,firmware,b,a,b,a,a\nTH-1,1,x,y,z,u,v\n") == [
        (1, "the header repeats 'a'; the header repeats 'b'")
    ]


def test_the_csv_form_refuses_a_header_over_the_cap(signed_in: Callable[[Role], Browser]) -> None:
    """Uploaded through ``POST /enrol/csv``, a header over the cap gets the form's usual refusal
    (400, the reason at row 1, nothing created)."""
    browser = signed_in(Role.OPERATOR)
    form = {
        "profiles": (io.BytesIO(_csv(MAX_CSV_COLUMNS + 1)), "devices.csv"),
        "csv_validity_hours": "24",
        "csrf_token": browser.csrf(),
    }
    response = browser.client.post("/enrol/csv", data=form, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Row 1: the header names 1,003 columns, more than the 1,002 allowed" in response.text
    assert "no token was created" in response.text
