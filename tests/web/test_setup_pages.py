"""The organisation setup page: who may use it, what it shows, and setup with an uploaded trustee keystore."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from argon2.profiles import CHEAPEST
from flask import Flask

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import trellis_did
from did_registry.ledger.txn import TxnRejected
from tests.web.ledger_support import TRUSTEE_PASSPHRASE, LedgerPortal, ledger_portal
from tests.web.support import PASSWORD, Browser, audit_actions, db, portal
from wallet.keystore import KDF_TESTING, Keystore
from web.accounts import create_operator
from web.app import create_app
from web.config import PortalConfig
from web.models import Role
from web.organisation import LedgerRefused, Organisation, SetupStep
from web.portal import EXTENSION


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerPortal]:
    """A portal configured for a running node, its organisation not set up."""
    with ledger_portal(tmp_path) as made:
        yield made


@pytest.fixture
def app(ledger: LedgerPortal) -> Flask:
    """The ledger-backed portal app (replaces the plain app of conftest)."""
    return ledger.app


def upload(browser: Browser, keystore: bytes, passphrase: str, *, csrf: bool = True) -> tuple[int, str]:
    """Post the setup form with a keystore file; the status and page."""
    form: dict[str, object] = {"keystore": (io.BytesIO(keystore), "trustee.key"), "passphrase": passphrase}
    if csrf:
        form["csrf_token"] = browser.csrf()
    response = browser.client.post("/setup", data=form, content_type="multipart/form-data")
    return response.status_code, response.text


def unchanged(ledger: LedgerPortal, height: int) -> bool:
    """No organisation keystore was written and the ledger did not grow."""
    return not ledger.organisation.has_keystore and ledger.height() == height


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.AUDITOR])
def test_only_admins_see_setup(signed_in: Callable[[Role], Browser], role: Role) -> None:
    """Operators and auditors get 403 for the page."""
    assert signed_in(role).get("/setup").status_code == 403


def test_operator_cannot_run_setup(signed_in: Callable[[Role], Browser], ledger: LedgerPortal) -> None:
    """An operator's setup request is refused and nothing is done."""
    height = ledger.height()
    status, _ = upload(signed_in(Role.OPERATOR), ledger.trustee_keystore(), TRUSTEE_PASSPHRASE)
    assert status == 403 and unchanged(ledger, height)


def test_stranger_is_sent_to_sign_in(browser: Browser) -> None:
    """Someone not signed in is redirected to the sign-in page."""
    response = browser.get("/setup")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_unconfigured_portal_names_missing_settings(tmp_path: Path) -> None:
    """Without nodes, genesis and passphrase the page names the three environment variables."""
    app = create_app(PortalConfig(instance_path=tmp_path / "bare", password_parameters=CHEAPEST))
    with db(app) as session:
        create_operator(session, app.extensions[EXTENSION].passwords, "root", PASSWORD, "admin")
    browser = Browser(app.test_client())
    browser.login("root")
    page = browser.get("/setup").text
    for name in ("TRELLIS_WEB_NODES", "TRELLIS_WEB_GENESIS", "TRELLIS_WEB_ORG_PASSPHRASE"):
        assert name in page
    app.extensions[EXTENSION].engine.dispose()


def test_page_lists_every_missing_step(signed_in: Callable[[Role], Browser]) -> None:
    """Before setup, each step shows as missing, with the upload form."""
    page = signed_in(Role.ADMIN).get("/setup").text
    assert page.count("Missing:") == len(SetupStep)
    assert 'name="keystore"' in page and 'type="file"' in page


def test_setup_with_trustee_keystore_completes_every_step(
    signed_in: Callable[[Role], Browser], ledger: LedgerPortal
) -> None:
    """The uploaded trustee keystore signs the missing steps; the page then shows them done; it is audited."""
    status, page = upload(signed_in(Role.ADMIN), ledger.trustee_keystore(), TRUSTEE_PASSPHRASE)
    assert status == 200, page
    assert ledger.organisation.status(ledger.client).complete
    assert page.count("Done:") == len(SetupStep) and "Missing:" not in page
    did = ledger.organisation.did
    assert ("admin", "organisation.setup", did) in audit_actions(ledger.app)


def test_wrong_passphrase_changes_nothing(signed_in: Callable[[Role], Browser], ledger: LedgerPortal) -> None:
    """A wrong passphrase is reported on its field; no keystore is made, no transaction sent."""
    height = ledger.height()
    status, page = upload(signed_in(Role.ADMIN), ledger.trustee_keystore(), "not the passphrase")
    assert status == 400 and "passphrase does not open this keystore" in page
    assert unchanged(ledger, height)


def test_not_a_keystore_changes_nothing(signed_in: Callable[[Role], Browser], ledger: LedgerPortal) -> None:
    """A file that is not a keystore is refused on the file field."""
    height = ledger.height()
    status, page = upload(signed_in(Role.ADMIN), b"hello", TRUSTEE_PASSPHRASE)
    assert status == 400 and "not a usable keystore" in page
    assert unchanged(ledger, height)


def test_non_trustee_keystore_changes_nothing(
    signed_in: Callable[[Role], Browser], ledger: LedgerPortal
) -> None:
    """A keystore whose DID is no trustee is refused before anything is written."""
    key = Ed25519PrivateKey.generate()
    did = str(trellis_did(ledger.client.genesis.network, key.public_key))
    stranger = Keystore.new(key, metadata={"did": did}, params=KDF_TESTING).encrypt(TRUSTEE_PASSPHRASE)
    height = ledger.height()
    status, page = upload(signed_in(Role.ADMIN), stranger, TRUSTEE_PASSPHRASE)
    assert status == 400 and "is not a trustee" in page
    assert unchanged(ledger, height)


def test_keystore_naming_a_trustee_but_holding_another_key_changes_nothing(
    signed_in: Callable[[Role], Browser], ledger: LedgerPortal
) -> None:
    """A keystore that names the trustee's DID but holds a key its document on the ledger does not list
    is refused (400) before anything is written: no organisation keystore, no transaction, no audit
    entry (the organisation's keystore was written, and the setup audited, before the ledger refused)."""
    forged = Keystore.new(
        Ed25519PrivateKey.generate(), metadata={"did": ledger.node.trustee.did}, params=KDF_TESTING
    ).encrypt(TRUSTEE_PASSPHRASE)
    height = ledger.height()
    status, page = upload(signed_in(Role.ADMIN), forged, TRUSTEE_PASSPHRASE)
    assert status == 400 and "holds no key that" in page
    assert unchanged(ledger, height)
    assert [a for a in audit_actions(ledger.app) if a[1].startswith("organisation.")] == []


def test_setup_needs_csrf(signed_in: Callable[[Role], Browser], ledger: LedgerPortal) -> None:
    """Without the CSRF token the request is refused before the view runs."""
    height = ledger.height()
    status, _ = upload(signed_in(Role.ADMIN), ledger.trustee_keystore(), TRUSTEE_PASSPHRASE, csrf=False)
    assert status == 400 and unchanged(ledger, height)


def test_unreachable_ledger_changes_nothing(tmp_path: Path) -> None:
    """With no node answering, the page says so and setup is refused with nothing changed."""
    with ledger_portal(tmp_path, node_urls=("http://127.0.0.1:9",)) as dead:
        with db(dead.app) as session:
            create_operator(session, dead.app.extensions[EXTENSION].passwords, "root", PASSWORD, "admin")
        browser = Browser(dead.app.test_client())
        browser.login("root")
        assert "cannot be reached" in browser.get("/setup").text
        height = dead.height()
        status, page = upload(browser, dead.trustee_keystore(), TRUSTEE_PASSPHRASE)
        assert status == 503 and "cannot be reached" in page
        assert unchanged(dead, height)


def test_steps_made_before_a_refusal_are_audited(
    ledger: LedgerPortal, signed_in: Callable[[Role], Browser], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A setup whose later step the ledger refuses still audits the steps it made (on the ledger)."""

    def refuse(self: Organisation, *_: object, **__: object) -> None:
        raise LedgerRefused("role.grant", TxnRejected("forbidden", "the quorum is not met"))

    monkeypatch.setattr(Organisation, "_by_trustees", refuse)
    status, _ = upload(signed_in(Role.ADMIN), ledger.trustee_keystore(), TRUSTEE_PASSPHRASE)
    assert status == 502
    setups = [a for a in audit_actions(ledger.app) if a[1] == "organisation.setup"]
    assert len(setups) == 1


def test_an_organisation_keystore_that_does_not_open_is_a_503_page(
    ledger: LedgerPortal, signed_in: Callable[[Role], Browser]
) -> None:
    ledger.set_up()
    services = portal(ledger.app).services
    services._organisation = Organisation.in_instance(
        ledger.organisation.keystore_path.parent, "not the passphrase", params=KDF_TESTING
    )
    status, text = upload(signed_in(Role.ADMIN), ledger.trustee_keystore(), TRUSTEE_PASSPHRASE)
    assert status == 503 and "keystore cannot be opened" in text
