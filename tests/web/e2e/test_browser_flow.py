"""An operator's whole day in a real browser, and a real device living through it.

The operator signs in, sets the organisation up with a trustee's keystore, creates a provisioning
token for a device profile and reads its QR code off the page; the device decodes that image,
enrols with the portal, authenticates to a service protected by the verifier; the operator revokes
it in the portal, and the service refuses the device's next request. Every page is screenshotted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.web.e2e.support import (
    ADMIN,
    ADMIN_PASSWORD,
    DEVICE_PASSPHRASE,
    NETWORK,
    NETWORK_PASSPHRASE,
    PortalProcess,
    Service,
)
from wallet.device_client import DeviceClient
from wallet.enroll import EnrolmentPayload, enroll
from wallet.keystore import KDF_TESTING
from wallet.localnet import LocalNetwork
from web.qr import decode_qr

Shot = Callable[[Page, str], Path]
SETUP_STEPS = ("keystore", "did", "issuer_role", "accreditation", "revocation_list", "suspension_list")
"""The organisation's setup steps, in the order the portal does them (docs/enrolment.md)."""


def sign_in(page: Page, shot: Shot) -> None:
    """Sign in as the admin through the sign-in form."""
    page.goto("/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "login")
    page.get_by_label("Username").fill(ADMIN)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_text(f"Signed in as {ADMIN}")).to_be_visible()
    shot(page, "dashboard")


def set_up_organisation(page: Page, shot: Shot, network: LocalNetwork) -> None:
    """Run the organisation's set-up on /setup with the network's trustee keystore; every step ends done."""
    page.goto("/setup")
    expect(page.get_by_role("heading", name="Organisation setup")).to_be_visible()
    steps = page.locator("ul.steps > li")
    expect(steps).to_have_count(len(SETUP_STEPS))
    expect(steps.filter(has_text="Missing:")).to_have_count(len(SETUP_STEPS))
    shot(page, "setup-before")
    page.get_by_label("Trustee keystore file").set_input_files(network.directory / "trustee.key")
    page.get_by_label("Keystore passphrase").fill(NETWORK_PASSPHRASE)
    page.get_by_role("button", name="Run the missing steps").click()
    expect(page.get_by_role("status")).to_contain_text(", ".join(SETUP_STEPS))
    expect(steps.filter(has_text="Done:")).to_have_count(len(SETUP_STEPS))
    expect(steps.filter(has_text="Missing:")).to_have_count(0)
    expect(page.get_by_text("The organisation is ready to enrol devices.")).to_be_visible()
    shot(page, "setup-done")


def create_token(page: Page, shot: Shot, model: str, firmware: str) -> tuple[str, bytes]:
    """Create one provisioning token on /enrol; the payload shown and the PNG of the QR code shown."""
    page.goto("/enrol")
    expect(page.get_by_role("heading", name="Enrol devices")).to_be_visible()
    shot(page, "enrol")
    form = page.locator("form", has=page.get_by_label("Model"))
    form.get_by_label("Model").fill(model)
    form.get_by_label("Firmware version").fill(firmware)
    form.get_by_label("Further attributes (optional)").fill("site=north-hall")
    form.get_by_label("How many tokens").fill("1")
    form.get_by_role("button", name="Create tokens").click()
    expect(page.get_by_role("heading", name="Provisioning tokens created")).to_be_visible()
    image = page.get_by_role("img", name="Enrolment QR code")
    expect(image).to_be_visible()
    shot(page, "token-created")
    assert image.evaluate("img => img.complete && img.naturalWidth > 0"), (
        "the browser did not render the QR code"
    )
    seen = decode_qr(image.screenshot())  # what a camera pointed at the screen reads
    source = image.get_attribute("src")
    assert source is not None
    answer = page.request.get(source)
    assert answer.ok and answer.headers["content-type"] == "image/png", answer.status
    shown = page.get_by_label("Enrolment payload").input_value()
    assert seen == shown
    return shown, answer.body()


def see_token_used(page: Page, shot: Shot, did: str) -> None:
    """The token list on /enrol shows the token used, by the device ``did``."""
    page.goto("/enrol")
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=did, exact=True))
    expect(row).to_have_count(1)
    expect(row.get_by_role("cell", name="used", exact=True)).to_have_count(1)
    shot(page, "token-used")


def see_device(page: Page, shot: Shot, did: str, status: str) -> None:
    """Find the device on /devices with ``status`` and open its page."""
    page.goto("/devices")
    expect(page.get_by_role("heading", name="Devices", exact=True)).to_be_visible()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=did, exact=True))
    expect(row).to_have_count(1)
    expect(row.get_by_role("cell").nth(3)).to_have_text(status)
    shot(page, "devices")
    row.get_by_role("link", name=did, exact=True).click()
    expect(page.get_by_role("heading", name="Device", exact=True)).to_be_visible()
    expect(page.locator(".device-status")).to_have_text(status)
    shot(page, "device")


def revoke(page: Page, shot: Shot, did: str) -> None:
    """Revoke the device whose page is open: its confirmation page, then the confirmation."""
    page.get_by_role("link", name="Revoke…").click()
    expect(page.get_by_role("heading", name="Revoke this device?")).to_be_visible()
    expect(page.get_by_text(did, exact=True)).to_be_visible()
    shot(page, "revoke-confirm")
    page.get_by_role("button", name="Revoke the device").click()
    expect(page.get_by_role("status")).to_contain_text("The device was revoked")
    expect(page.locator(".device-status")).to_have_text("revoked")
    expect(page.get_by_text("Revoked: revocation is final.")).to_be_visible()
    shot(page, "revoked")


def test_operator_enrols_a_device_then_revokes_it(
    page: Page,
    shot: Shot,
    network: LocalNetwork,
    portal_server: PortalProcess,
    service: Service,
    tmp_path: Path,
) -> None:
    """Sign in, set up, enrol from the page's QR code, authenticate (200), revoke, refused (403 revoked)."""
    sign_in(page, shot)
    set_up_organisation(page, shot, network)

    shown_payload, png = create_token(page, shot, model="TH-9", firmware="2.4.1")
    decoded = decode_qr(png)
    assert decoded == shown_payload
    payload = EnrolmentPayload.decode(decoded)
    assert (payload.network, list(payload.nodes)) == (NETWORK, network.urls)
    assert payload.portal == portal_server.url

    wallet = enroll(decoded, tmp_path / "device", DEVICE_PASSPHRASE, params=KDF_TESTING)
    did = wallet.did
    assert did.startswith(f"did:trellis:{NETWORK}:")
    subject = wallet.device_credential()["credentialSubject"]
    assert (subject["model"], subject["firmware"], subject["site"]) == ("TH-9", "2.4.1", "north-hall")
    see_token_used(page, shot, did)
    see_device(page, shot, did, "active")

    with DeviceClient(wallet, service.url) as device:
        service.catch_up()
        accepted = device.signed_request("POST", "/readings", json={"celsius": 21.5})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["from"] == did
        assert accepted.json()["accepted"] == {"celsius": 21.5}

        revoke(page, shot, did)
        service.catch_up()
        refused = device.signed_request("POST", "/readings", json={"celsius": 21.7})
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["reason"] == "revoked"
