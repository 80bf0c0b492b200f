"""Malformed query values and bodies are refused with a 4xx, never answered with a 500.

Digits that are not ASCII (``²`` passes ``str.isdigit`` but not ``int``), dates and times at the ends
of the calendar, and JSON nested deeper than the decoder goes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from tests.web.support import Browser
from web import ledger_pages
from web.models import Role

SUPERSCRIPT_TWO = "\u00b2"
DEEP_JSON = b"[" * 200_000


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "query",
    [
        f"limit={SUPERSCRIPT_TWO}",
        "limit=" + "9" * 5000,
        "enrolled_to=9999-12-31",
        "enrolled_from=0001-01-01",
        "after=0001-01-01T00:00:00%2B14:00|did:trellis:x",
    ],
)
def test_device_list_query_values_are_a_4xx(app: Flask, token_of: Callable[[Role], str], query: str) -> None:
    answer = app.test_client().get(f"/api/v1/devices?{query}", headers=_bearer(token_of(Role.AUDITOR)))
    assert answer.status_code in (200, 400)
    if answer.status_code == 400:
        assert answer.mimetype == "application/problem+json"


def test_through_the_last_day_of_the_calendar_lists_every_device(
    app: Flask, token_of: Callable[[Role], str]
) -> None:
    answer = app.test_client().get(
        "/api/v1/devices?enrolled_to=9999-12-31", headers=_bearer(token_of(Role.AUDITOR))
    )
    assert answer.status_code == 200 and answer.get_json()["devices"] == []


@pytest.mark.parametrize("path", ["/devices", "/audit"])
def test_pages_refuse_non_ascii_digits_without_a_500(signed_in: Callable[[Role], Browser], path: str) -> None:
    answer = signed_in(Role.AUDITOR).get(f"{path}?before={SUPERSCRIPT_TWO}&enrolled_to=9999-12-31")
    assert answer.status_code < 500


def test_a_height_in_non_ascii_digits_is_no_height(app: Flask) -> None:
    with app.test_request_context(f"/ledger/blocks?before={SUPERSCRIPT_TWO}"):
        assert ledger_pages._height_arg("before") is None


def test_token_count_in_non_ascii_digits_is_a_400(app: Flask, token_of: Callable[[Role], str]) -> None:
    body = {"model": "m", "firmware": "f", "count": SUPERSCRIPT_TWO}
    answer = app.test_client().post("/api/v1/tokens", json=body, headers=_bearer(token_of(Role.OPERATOR)))
    assert answer.status_code == 400 and answer.mimetype == "application/problem+json"


def test_token_list_limit_in_non_ascii_digits_is_a_400(app: Flask, token_of: Callable[[Role], str]) -> None:
    answer = app.test_client().get(
        f"/api/v1/tokens?limit={SUPERSCRIPT_TWO}", headers=_bearer(token_of(Role.AUDITOR))
    )
    assert answer.status_code == 400 and answer.mimetype == "application/problem+json"


def test_enrol_form_count_in_non_ascii_digits_is_refused(signed_in: Callable[[Role], Browser]) -> None:
    form = {"model": "m", "firmware": "f", "attributes": "", "count": SUPERSCRIPT_TWO, "validity_hours": "24"}
    answer = signed_in(Role.OPERATOR).post("/enrol", form)
    assert 400 <= answer.status_code < 500 or "count" in answer.get_data(as_text=True).lower()
    assert answer.status_code < 500


def test_a_report_time_beyond_the_calendar_in_utc_is_a_400(
    app: Flask, token_of: Callable[[Role], str]
) -> None:
    event = {"did": "did:trellis:x", "service": "s", "outcome": "admitted", "at": "0001-01-01T00:00:00+14:00"}
    answer = app.test_client().post(
        "/api/v1/authentications", json={"events": [event]}, headers=_bearer(token_of(Role.OPERATOR))
    )
    assert answer.status_code == 400 and answer.get_json()["field"] == "at"


@pytest.mark.parametrize(
    "path", ["/api/v1/tokens", "/api/v1/operators", "/api/v1/authentications", "/api/v1/enrol/batch"]
)
def test_json_nested_too_deeply_is_a_400(app: Flask, token_of: Callable[[Role], str], path: str) -> None:
    answer = app.test_client().post(
        path, data=DEEP_JSON, content_type="application/json", headers=_bearer(token_of(Role.ADMIN))
    )
    assert answer.status_code == 400 and answer.mimetype == "application/problem+json"


def test_json_nested_too_deeply_is_a_400_at_the_public_enrolment(app: Flask) -> None:
    answer = app.test_client().post("/api/v1/enrol", data=DEEP_JSON, content_type="application/json")
    assert answer.status_code == 400 and answer.mimetype == "application/problem+json"


def test_a_report_holding_a_control_character_is_a_400(app: Flask, token_of: Callable[[Role], str]) -> None:
    """(A NUL, which a PostgreSQL portal database cannot store, among them.)"""
    event = {"did": "did:trellis:x", "service": "s\x00", "outcome": "admitted", "at": "2026-01-01T00:00:00Z"}
    answer = app.test_client().post(
        "/api/v1/authentications", json={"events": [event]}, headers=_bearer(token_of(Role.OPERATOR))
    )
    assert answer.status_code == 400 and answer.get_json()["field"] == "service"


def test_token_attributes_nested_too_deeply_are_a_form_error(signed_in: Callable[[Role], Browser]) -> None:
    """Attributes as JSON nested deeper than the decoder goes: the form says so (it answered 500)."""
    browser = signed_in(Role.OPERATOR)
    form = {"model": "TH-1", "firmware": "1.0", "attributes": "{" + '"a":{' * 5000 + "}" * 5001, "count": "1"}
    answer = browser.post("/enrol", form)
    assert answer.status_code == 400 and "nested too deeply" in answer.text
