"""The ``setup`` blueprint: the organisation's issuer setup, for admins.

``/setup`` shows what the portal's configuration lacks (the environment variables to set) and each
step of :meth:`web.organisation.Organisation.status`. To do the missing steps the admin uploads a
trustee's keystore (the ``trellis-keystore`` file, e.g. ``trustee.key`` of ``trellis network init``)
with its passphrase; the portal decrypts it in memory only (it is never saved), checks that its DID
is a trustee on the ledger and that it holds a key the DID's document there lets sign, and runs
:meth:`~web.organisation.Organisation.setup`. A wrong passphrase, a keystore that is not a trustee's
(or only names one), or an unreachable ledger is refused before anything changes.
"""

from __future__ import annotations

from typing import Any, Final

from flask import Blueprint, request
from flask.templating import render_template
from flask.typing import ResponseReturnValue

from did_registry.client import LedgerClient, LedgerUnavailable
from did_registry.errors import DidRegistryError
from did_registry.identity.did_document import DIDDocument
from wallet.errors import KeystoreError, WrongPassphrase
from wallet.keystore import Keystore
from wallet.ledger_cli import signer_of, signer_on_ledger
from web import audit
from web.models import Role
from web.organisation import (
    LedgerRefused,
    LedgerUnreachable,
    PortalError,
    SetupStatus,
    SetupStep,
    Signer,
)
from web.portal import portal
from web.security import role_required

__all__ = ["bp", "STEP_LABELS", "missing_settings"]

STEP_LABELS: Final = {
    SetupStep.KEYSTORE: "The organisation's key, in an encrypted keystore in the instance folder",
    SetupStep.DID: "The organisation's DID on the ledger (endorsed by a trustee)",
    SetupStep.ISSUER_ROLE: "The issuer role (granted by trustees)",
    SetupStep.ACCREDITATION: "Accredited for DeviceCredential in the trust registry (by trustees)",
    SetupStep.REVOCATION_LIST: "Its first revocation status list on the ledger",
    SetupStep.SUSPENSION_LIST: "Its first suspension status list on the ledger",
}
"""What each setup step means, as the page says it."""
_MAX_KEYSTORE: Final = 1 << 20

bp = Blueprint("setup", __name__)
"""The organisation setup page."""


def missing_settings() -> list[str]:
    """The environment variables the portal still needs to reach the ledger and open its keystore."""
    c = portal().config
    return [
        name
        for name, value in (
            ("TRELLIS_WEB_NODES", c.node_urls),
            ("TRELLIS_WEB_GENESIS", c.genesis_path),
            ("TRELLIS_WEB_ORG_PASSPHRASE", c.organisation_passphrase),
        )
        if not value
    ]


def _status() -> tuple[SetupStatus | None, str | None]:
    services = portal().services
    if not services.configured:
        return None, None
    try:
        services.ledger.head()  # reachable at all, even before the organisation has a keystore
        return services.organisation.status(services.ledger), None
    except LedgerUnavailable as exc:
        return None, f"The ledger cannot be reached: {exc}"
    except (PortalError, DidRegistryError, KeystoreError) as exc:
        return None, str(exc)


def _page(status_code: int = 200, **context: Any) -> ResponseReturnValue:
    status, problem = _status()
    page = render_template(
        "setup.html",
        missing_settings=missing_settings(),
        status=status,
        problem=context.pop("problem", None) or problem,
        steps=list(SetupStep),
        labels=STEP_LABELS,
        errors=context.pop("errors", {}),
        **context,
    )
    return page, status_code


@bp.get("/setup")
@role_required(Role.ADMIN)
def index() -> ResponseReturnValue:
    """What is configured and which setup steps are done."""
    return _page()


def _audit_partial(before: SetupStatus | None, trustee: str) -> None:
    """Audit the steps a setup that then failed did make (they are on the ledger: a keystore, a DID,
    roles), as far as the ledger can be read now."""
    if before is None:
        return
    services = portal().services
    try:
        after = services.organisation.status(services.ledger)
    except (DidRegistryError, PortalError, KeystoreError):
        return
    done = [step.value for step in before.missing if step not in after.missing]
    if done:
        detail = {"steps": done, "trustee": trustee, "height": after.height, "failed": True}
        audit.record("organisation.setup", after.did, detail=detail)


def _trustee_keystore() -> Keystore | tuple[str, str]:
    """The uploaded, decrypted trustee keystore, or ``(field, reason)``."""
    upload = request.files.get("keystore")
    passphrase = request.form.get("passphrase", "")
    if upload is None or not upload.filename:
        return "keystore", "choose the trustee's keystore file"
    if not passphrase:
        return "passphrase", "give the keystore's passphrase"
    data = upload.read(_MAX_KEYSTORE + 1)
    try:
        keystore = Keystore.decrypt(data, passphrase, source=upload.filename[:100])
        signer_of(keystore)
    except WrongPassphrase:
        return "passphrase", "the passphrase does not open this keystore"
    except KeystoreError as exc:
        return "keystore", f"this is not a usable keystore: {exc}"
    return keystore


def _trustee_on_ledger(ledger: LedgerClient, keystore: Keystore) -> Signer | str:
    """The uploaded keystore's trustee as the ledger knows it, or why it is none: its DID must hold the
    ``trustee`` role, and the keystore a key that the DID's document on the ledger lets sign
    (:func:`~wallet.ledger_cli.signer_on_ledger`), read with proofs. A keystore that only names a
    trustee's DID is refused here, before the organisation's keystore is written."""
    did, _, _ = signer_of(keystore)
    (record, roles), _ = ledger.prove_many([f"did:{did}", f"role:{did}"])
    if "trustee" not in (roles or []):
        return f"{did} is not a trustee of this network"
    if not isinstance(record, dict) or record.get("deactivated"):
        return f"{did} has no active DID document on the ledger"
    try:
        return Signer(*signer_on_ledger(keystore, DIDDocument.from_json(record["document"])))
    except KeystoreError:
        return f"this keystore holds no key that {did}'s document on the ledger lets sign"


@bp.post("/setup")
@role_required(Role.ADMIN)
def run() -> ResponseReturnValue:
    """Do the missing setup steps with an uploaded trustee keystore; nothing changes on a refusal."""
    services = portal().services
    if not services.configured:
        return _page(503, problem="Set the missing settings first; nothing was changed.")
    keystore = _trustee_keystore()
    if isinstance(keystore, tuple):
        return _page(400, errors={keystore[0]: keystore[1]})
    trustee, _, _ = signer_of(keystore)
    ledger, organisation = services.ledger, services.organisation
    before = None
    try:
        before = organisation.status(ledger)
        if before.complete:
            return _page(200, done="The organisation is set up already; nothing was changed.")
        signer: Keystore | Signer = keystore
        if before.needs_trustee:  # the trustee signs: refused here unless the ledger would take its key
            on_ledger = _trustee_on_ledger(ledger, keystore)
            if isinstance(on_ledger, str):
                return _page(400, errors={"keystore": on_ledger})
            signer = on_ledger
        after = organisation.setup(ledger, signer)
    except (LedgerUnavailable, LedgerUnreachable) as exc:
        _audit_partial(before, trustee)
        return _page(503, problem=f"The ledger cannot be reached: {exc}")
    except LedgerRefused as exc:
        _audit_partial(before, trustee)
        return _page(502, problem=str(exc))
    except KeystoreError as exc:  # the organisation's own keystore: its passphrase in the settings
        _audit_partial(before, trustee)
        return _page(503, problem=f"The organisation's keystore cannot be opened: {exc}")
    except (PortalError, DidRegistryError) as exc:
        _audit_partial(before, trustee)
        return _page(400, problem=str(exc))
    done = [step.value for step in before.missing if step not in after.missing]
    audit.record(
        "organisation.setup", after.did, detail={"steps": done, "trustee": trustee, "height": after.height}
    )
    return _page(200, done=f"Set up now: {', '.join(done) or 'nothing was missing'}.")
