"""The enrolment pages: provisioning tokens from a profile or a CSV file, their QR codes and sheet."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlmodel import select

from tests.web.ledger_support import LedgerPortal, ledger_portal
from tests.web.support import Browser, audit_actions, db
from wallet.enroll import EnrolmentPayload
from web.enrolment_records import DeviceProfile, ProvisioningToken, ProvisioningTokenRow
from web.models import Role
from web.qr import decode_qr
from web.qr_sheet import PER_PAGE, sheet_page
from web.token_handout import HandedToken, Handouts

PROFILE = {"model": "TH-1", "firmware": "2.4.1", "attributes": "site=depot-7\nzone = north",
           "count": "1", "validity_hours": "24"}  # fmt: skip


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerPortal]:
    """A portal configured for a running node."""
    with ledger_portal(tmp_path) as made:
        yield made


@pytest.fixture
def app(ledger: LedgerPortal) -> Flask:
    """The ledger-backed portal app (replaces the plain app of conftest)."""
    return ledger.app


def rows(app: Flask) -> list[ProvisioningTokenRow]:
    """Every stored provisioning token."""
    with db(app) as session:
        return list(session.exec(select(ProvisioningTokenRow)).all())


def create(browser: Browser, **changes: str) -> tuple[int, str, str]:
    """Post the profile form; status, page and redirect location."""
    response = browser.post("/enrol", {**PROFILE, **changes})
    return response.status_code, response.text, response.headers.get("Location", "")


def upload_csv(browser: Browser, data: bytes, hours: str = "24") -> tuple[int, str, str]:
    """Post the CSV form; status, page and redirect location."""
    form = {
        "profiles": (io.BytesIO(data), "devices.csv"),
        "csv_validity_hours": hours,
        "csrf_token": browser.csrf(),
    }
    response = browser.client.post("/enrol/csv", data=form, content_type="multipart/form-data")
    return response.status_code, response.text, response.headers.get("Location", "")


def token_ids(page: str) -> list[str]:
    """The token ids the batch page links QR codes of."""
    return list(dict.fromkeys(re.findall(r"/enrol/tokens/([0-9a-f]{64})/qr\.png", page)))


@pytest.mark.parametrize("role", [Role.ADMIN, Role.OPERATOR])
def test_admins_and_operators_see_the_form(signed_in: Callable[[Role], Browser], role: Role) -> None:
    """The page has the profile form and the CSV upload."""
    page = signed_in(role).get("/enrol").text
    assert 'name="model"' in page and 'name="profiles"' in page


def test_auditor_cannot_create_tokens(signed_in: Callable[[Role], Browser], app: Flask) -> None:
    """An auditor gets 403 for the page, the form and the CSV upload; nothing is created."""
    auditor = signed_in(Role.AUDITOR)
    assert auditor.get("/enrol").status_code == 403
    assert create(auditor)[0] == 403
    assert upload_csv(auditor, b"model,firmware\nA,1\n")[0] == 403
    assert rows(app) == []


def test_stranger_is_sent_to_sign_in(browser: Browser) -> None:
    """Someone not signed in is redirected to the sign-in page."""
    response = browser.get("/enrol")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_creating_needs_csrf(signed_in: Callable[[Role], Browser], app: Flask) -> None:
    """Without the CSRF token nothing is created."""
    response = signed_in(Role.OPERATOR).post("/enrol", PROFILE, csrf=False)
    assert response.status_code == 400 and rows(app) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": " "}, "give the device&#39;s model"),
        ({"firmware": ""}, "give the device&#39;s firmware"),
        ({"count": "0"}, "count must be a whole number from 1 to 10,000"),
        ({"count": "10001"}, "count must be a whole number from 1 to 10,000"),
        ({"count": "many"}, "count must be a whole number"),
        ({"validity_hours": "0"}, "validity_hours must be a whole number from 1 to 8,760"),
        ({"attributes": "site depot"}, "line 1 is not key=value"),
        ({"attributes": "model=X"}, "attributes may not redefine model"),
        ({"attributes": "{not json"}, "not valid JSON"),
        ({"attributes": "[1]"}, "line 1 is not key=value"),
    ],
)
def test_bad_input_is_refused_with_nothing_created(
    signed_in: Callable[[Role], Browser], app: Flask, changes: dict[str, str], message: str
) -> None:
    """The form comes back (400) with the reason and "Nothing was changed"; no token exists."""
    status, page, _ = create(signed_in(Role.OPERATOR), **changes)
    assert status == 400 and message in page and "Nothing was changed" in page
    assert rows(app) == []


def test_one_token_shows_its_qr_code_which_decodes_to_the_payload(
    signed_in: Callable[[Role], Browser], app: Flask
) -> None:
    """A single token's page shows the QR code inline; the PNG decodes to the payload of the stored token."""
    operator = signed_in(Role.OPERATOR)
    status, _, location = create(operator)
    assert status == 303
    page = operator.get(location).text
    assert "1 of 1" in page
    (token_id,) = token_ids(page)
    png = operator.get(f"/enrol/tokens/{token_id}/qr.png")
    assert png.mimetype == "image/png"
    payload = json.loads(decode_qr(png.data))
    assert payload["type"] == "trellis-enrolment" and payload["portal"] == "http://portal.test"
    assert payload["token"] in page  # the payload text, to copy
    stored = rows(app)
    assert [row.token_hash for row in stored] == [token_id]
    assert json.loads(stored[0].attributes) == {"site": "depot-7", "zone": "north"}
    assert payload["token"] not in json.dumps([row.model_dump(mode="json") for row in stored])
    svg = operator.get(f"/enrol/tokens/{token_id}/qr.svg")
    assert svg.mimetype == "image/svg+xml" and b"<svg" in svg.data
    assert ("operator", "enrolment.tokens_create", "TH-1") in audit_actions(app)


def test_tokens_are_shown_only_to_their_creator(signed_in: Callable[[Role], Browser]) -> None:
    """Another signed-in operator (even an admin) gets 404 for the batch, its QR codes and its sheet."""
    operator = signed_in(Role.OPERATOR)
    _, _, location = create(operator)
    (token_id,) = token_ids(operator.get(location).text)
    admin = signed_in(Role.ADMIN)
    assert admin.get(location).status_code == 404
    assert admin.get(f"/enrol/tokens/{token_id}/qr.png").status_code == 404
    assert admin.get(location + "/sheet.pdf").status_code == 404


def test_bulk_tokens_make_a_printable_pdf_sheet(signed_in: Callable[[Role], Browser], app: Flask) -> None:
    """A batch of 13 makes 13 tokens and a two-page PDF."""
    operator = signed_in(Role.OPERATOR)
    status, _, location = create(operator, count=str(PER_PAGE + 1))
    assert status == 303 and len(rows(app)) == PER_PAGE + 1
    page = operator.get(location).text
    assert f"{PER_PAGE + 1} of {PER_PAGE + 1}" in page and len(token_ids(page)) == PER_PAGE + 1
    pdf = operator.get(location + "/sheet.pdf?part=1")
    assert pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf.data)) == 2
    assert operator.get(location + "/sheet.pdf?part=2").status_code == 404


def test_csv_makes_one_token_per_row(signed_in: Callable[[Role], Browser], app: Flask) -> None:
    """Each row becomes a token with its model, firmware and attribute columns (empty cells left out)."""
    operator = signed_in(Role.OPERATOR)
    data = b"model,firmware,site,zone\nTH-1,2.4.1,depot-7,north\nTH-2,1.0,,south\nTH-1,2.4.1,depot-7,north\n"
    status, _, location = upload_csv(operator, data)
    assert status == 303
    stored = sorted((row.model, row.firmware, row.attributes) for row in rows(app))
    assert stored == [
        ("TH-1", "2.4.1", '{"site": "depot-7", "zone": "north"}'),
        ("TH-1", "2.4.1", '{"site": "depot-7", "zone": "north"}'),
        ("TH-2", "1.0", '{"zone": "south"}'),
    ]
    assert "3 of 3" in operator.get(location).text


def test_csv_errors_are_reported_per_row_with_nothing_created(
    signed_in: Callable[[Role], Browser], app: Flask
) -> None:
    """Every bad row is named; the good rows are not created either."""
    data = b"model,firmware,site\nTH-1,2.4.1,a\n,1.0,b\nTH-3,3.0\nTH-4,4.0,model\n"
    status, page, _ = upload_csv(signed_in(Role.OPERATOR), data)
    assert status == 400
    assert "Row 3: give the device&#39;s model" in page
    assert "Row 4: 2 cells, but the header names 3 columns" in page
    assert "Row 2" not in page and "no token was created" in page
    assert rows(app) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"model,site\nA,b\n", "the header needs a &#39;firmware&#39; column"),
        (b"model,firmware\n", "no devices"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_csv_files_are_refused(
    signed_in: Callable[[Role], Browser], app: Flask, data: bytes, message: str
) -> None:
    """An empty file, a header without firmware, no rows, or non-UTF-8 bytes are refused."""
    status, page, _ = upload_csv(signed_in(Role.OPERATOR), data)
    assert status == 400 and message in page and rows(app) == []


@pytest.mark.parametrize("path", ["/enrol", "/setup"])
def test_every_input_has_a_label(signed_in: Callable[[Role], Browser], path: str) -> None:
    """Each input and textarea of the enrolment and setup pages has a label."""
    page = signed_in(Role.ADMIN).get(path).text
    ids = re.findall(r'<(?:input|textarea) id="([^"]+)"', page)
    assert ids
    for input_id in ids:
        assert f'<label for="{input_id}">' in page, input_id


def test_batch_page_textarea_is_labelled(signed_in: Callable[[Role], Browser]) -> None:
    """The payload text box of a single token's page has a label."""
    operator = signed_in(Role.OPERATOR)
    page = operator.get(create(operator)[2]).text
    assert '<textarea id="payload"' in page and '<label for="payload">' in page


def test_sheet_codes_decode_to_their_payloads() -> None:
    """A code drawn on the printable sheet decodes to the token's payload."""
    payload = json.dumps({"v": 1, "type": "trellis-enrolment", "token": "C" * 43}, separators=(",", ":"))
    token = HandedToken("ab" * 32, payload, "TH-1", "2.4.1", datetime.now(UTC))
    out = io.BytesIO()
    sheet_page([token]).save(out, format="PNG")
    assert decode_qr(out.getvalue()) == payload


def test_handouts_expire_and_belong_to_their_operator() -> None:
    """A handout is readable by its operator only, and by nobody once its time is over."""
    token = ProvisioningToken(
        "cd" * 32,
        DeviceProfile("TH-1", "2.4.1"),
        datetime.now(UTC),
        datetime.now(UTC),
        "issued",
        token="D" * 43,
        payload=EnrolmentPayload("http://portal.test", "D" * 43, "testnet", "a" * 64, ("http://n",)),
    )
    kept = Handouts(ttl=60).add(7, [token])
    held = Handouts(ttl=60)
    handout = held.add(7, [token])
    assert held.token("cd" * 32, 7) is not None and held.batch(handout.batch_id, 8) is None
    assert held.token("cd" * 32, 8) is None and kept.batch_id != handout.batch_id
    gone = Handouts(ttl=0)
    expired = gone.add(7, [token])
    assert gone.batch(expired.batch_id, 7) is None and gone.token("cd" * 32, 7) is None


def test_the_batch_page_shows_enrolment_progress_that_its_script_polls(
    signed_in: Callable[[Role], Browser], app: Flask
) -> None:
    """The batch page starts at 0 of N; its progress URL counts the batch's tokens by status as devices
    claim and use them (the page's script polls it), and only the operator who made the batch reads it."""
    operator = signed_in(Role.OPERATOR)
    data = b"model,firmware\nTH-1,1.0\nTH-1,1.0\nTH-1,1.0\n"
    status, _, location = upload_csv(operator, data)
    assert status == 303
    page = operator.get(location).text
    assert "batch_progress.js" in page and 'max="3" value="0"' in page
    with db(app) as session:
        stored = list(session.exec(select(ProvisioningTokenRow)).all())
        stored[0].status, stored[1].status = "used", "claimed"
        session.add_all(stored[:2])
        session.commit()
    progress = operator.get(location + "/progress")
    assert progress.status_code == 200 and progress.headers["Cache-Control"] == "no-store"
    assert json.loads(progress.text) == {"total": 3, "issued": 1, "claimed": 1, "used": 1, "expired": 0}
    assert 'max="3" value="1"' in operator.get(location).text
    assert signed_in(Role.ADMIN).get(location + "/progress").status_code == 404  # another operator's batch
    assert signed_in(Role.AUDITOR).get(location + "/progress").status_code == 403
