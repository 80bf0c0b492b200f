"""The device side of enrolment: read the portal's QR payload, create the DID, fetch the credential.

The payload format (``trellis-enrolment``, version 1) is specified in ``docs/enrolment.md`` and has
its one home here, :class:`EnrolmentPayload`; the portal imports it. :func:`enroll` generates the
device's key on the device (it never leaves it), builds ``did:trellis:<network>:<id>`` and its initial
document, signs the ``did.create`` transaction with that key (the signature is the proof of
possession), sends ``{"token", "txn"}`` to ``<portal>/api/v1/enrol``, checks the answer against the ledger
(found through the payload's nodes and anchored in its genesis hash) and keeps the device credential
in a :class:`~wallet.device.DeviceWallet`. The key is saved (encrypted) before it is
sent anywhere, so an interrupted enrolment can be retried with the same key.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from did_registry.client import LedgerClient, LedgerUnavailable, TrellisResolver
from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_trellis import (
    KEY_FRAGMENT,
    check_self_certifying,
    initial_document,
    parse_trellis_did,
    trellis_did,
)
from did_registry.identity.multibase import decode_base58btc
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.txn import Transaction, TxnRejected, signing_input
from wallet.credential import check_credential, did_of, verify_credential
from wallet.device import DEVICE_CREDENTIAL_TYPE, DeviceWallet
from wallet.errors import MalformedDocument, VerificationFailed, WalletError
from wallet.holder import KEYSTORE_FILE
from wallet.keystore import KDF_MODERATE, KdfParams
from wallet.resolver import ResolverKeyLookup
from wallet.status import LedgerStatusCheck

__all__ = [
    "PAYLOAD_TYPE",
    "PAYLOAD_VERSION",
    "ENROL_PATH",
    "EnrollmentError",
    "EnrolmentPayload",
    "read_qr_image",
    "load_payload",
    "enrolment_transaction",
    "check_enrolment_transaction",
    "verify_enrolment",
    "enroll",
]

PAYLOAD_TYPE: Final = "trellis-enrolment"
"""The ``type`` member of an enrolment payload."""
PAYLOAD_VERSION: Final = 1
"""The payload version this module writes and reads."""
ENROL_PATH: Final = "/api/v1/enrol"
"""Where, under the portal's base URL, a device sends its enrolment request."""

_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, base64url without padding
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_ANY_KEY: Final = Ed25519PublicKey(bytes(32))

ImageDecoder = Callable[[Path], str]
"""``image file -> the text of the QR code in it`` (:func:`read_qr_image` by default)."""


class EnrollmentError(WalletError):
    """Enrolment failed: a bad payload, an unreadable QR image, or a refusal by the portal."""

    def __init__(self, detail: str, *, status: int | None = None, code: str | None = None) -> None:
        self.detail = detail
        self.status = status
        self.code = code
        super().__init__(detail)


def _is_http_url(value: object) -> bool:
    """Whether ``value`` is an http(s) URL with a host that a client can reach (``http://[::1`` is not)."""
    if not isinstance(value, str) or not value.startswith(("https://", "http://")) or not value.isprintable():
        return False
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError, TypeError):
        return False
    return bool(url.host) and " " not in url.host and (url.port is None or 0 < url.port < 65536)


@dataclass(frozen=True, slots=True)
class EnrolmentPayload:
    """What an enrolment QR code carries: where to enrol, the one-time token, and the network."""

    portal: str
    token: str
    network: str
    genesis: str
    nodes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON object (members in the documented order)."""
        return {
            "v": PAYLOAD_VERSION,
            "type": PAYLOAD_TYPE,
            "portal": self.portal,
            "token": self.token,
            "network": self.network,
            "genesis": self.genesis,
            "nodes": list(self.nodes),
        }

    def encode(self) -> str:
        """The compact JSON text a QR code encodes."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_json(cls, data: object) -> EnrolmentPayload:
        """Parse and check a payload object; raise :class:`EnrollmentError` saying what is wrong."""
        if not isinstance(data, Mapping):
            raise EnrollmentError("an enrolment payload is a JSON object")
        if data.get("type") != PAYLOAD_TYPE:
            raise EnrollmentError(f"not a {PAYLOAD_TYPE} payload (type {data.get('type')!r})")
        if data.get("v") != PAYLOAD_VERSION:
            raise EnrollmentError(f"unsupported payload version {data.get('v')!r}")
        portal, token, network = data.get("portal"), data.get("token"), data.get("network")
        genesis, nodes = data.get("genesis"), data.get("nodes")
        if not isinstance(portal, str) or not _is_http_url(portal):
            raise EnrollmentError("portal must be an http(s) URL")
        if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
            raise EnrollmentError("token must be 32 bytes in base64url without padding")
        if not isinstance(network, str):
            raise EnrollmentError("network must be a string")
        try:
            trellis_did(network, _ANY_KEY)  # checks the network name as the DID method defines it
        except DidRegistryError as exc:
            raise EnrollmentError(f"network: {exc}") from None
        if not isinstance(genesis, str) or not _HEX64_RE.fullmatch(genesis):
            raise EnrollmentError("genesis must be the genesis hash in 64 lowercase hex digits")
        if (
            not isinstance(nodes, Sequence)
            or isinstance(nodes, str)
            or not all(_is_http_url(n) for n in nodes)
        ):
            raise EnrollmentError("nodes must be an array of http(s) URLs")
        return cls(portal.rstrip("/"), token, network, genesis, tuple(nodes))

    @classmethod
    def decode(cls, text: str) -> EnrolmentPayload:
        """Parse the JSON text of a payload."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise EnrollmentError(f"the enrolment payload is not JSON: {exc}") from None
        return cls.from_json(data)


def read_qr_image(image: Path | bytes) -> str:
    """The text of the (first) QR code in an image file, or in an image's bytes (zxing-cpp, Pillow)."""
    import zxingcpp  # lazily: only devices that scan images need the decoder
    from PIL import Image, UnidentifiedImageError

    where = str(image) if isinstance(image, Path) else "the image"
    try:
        with Image.open(image if isinstance(image, Path) else io.BytesIO(image)) as opened:
            found = zxingcpp.read_barcodes(
                opened.convert("L"),
                formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode),
                text_mode=zxingcpp.TextMode.Plain,
            )
    except (OSError, UnidentifiedImageError) as exc:
        raise EnrollmentError(f"cannot read an image from {where}: {exc}") from None
    if not found:
        raise EnrollmentError(f"no QR code found in {where}")
    return found[0].text


def load_payload(source: str | Path, *, decode_image: ImageDecoder = read_qr_image) -> EnrolmentPayload:
    """The payload from its JSON text, a file holding that text, or a QR image file."""
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return EnrolmentPayload.decode(source)
    path = Path(source)
    if not path.is_file():
        raise EnrollmentError(f"{source} is neither an enrolment payload nor a file")
    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        return EnrolmentPayload.decode(data.decode("utf-8", errors="replace"))
    return EnrolmentPayload.decode(decode_image(path))


def enrolment_transaction(network: str, key: Ed25519PrivateKey) -> Transaction:
    """The device's self-signed ``did.create`` of its new did:trellis (nonce 1), proving its key."""
    did = str(trellis_did(network, key.public_key))
    document = initial_document(did, key.public_key).to_json()
    txn = Transaction.build(
        "did.create", network=network, submitter=did, nonce=1, body={"document": document}
    )
    return txn.signed(key, f"{did}#{KEY_FRAGMENT}")


def check_enrolment_transaction(txn_json: object, network: str) -> Transaction:
    """Check a device's enrolment transaction, as the portal does before it endorses it.

    It must be a ``did.create`` of a did:trellis of ``network`` whose document is the DID's own and
    whose only signature verifies with a ``capabilityInvocation`` key of that document from which the
    DID's id derives: that signature proves the device holds the key. Raises :class:`EnrollmentError`.
    """
    try:
        txn = Transaction.from_json(txn_json)
    except TxnRejected as exc:
        raise EnrollmentError(f"not a transaction: {exc.detail}") from None
    if txn.type != "did.create":
        raise EnrollmentError(f"an enrolment sends a did.create, not a {txn.type}")
    if txn.network != network:
        raise EnrollmentError(f"the transaction is for network {txn.network!r}, not {network!r}")
    did = txn.submitter
    if len(txn.signatures) != 1 or did_of(txn.signatures[0].verification_method) != did:
        raise EnrollmentError(f"the transaction must carry exactly one signature, by {did} itself")
    signature = txn.signatures[0]
    try:
        if parse_trellis_did(did).network != network:
            raise EnrollmentError(f"{did} is not a DID of network {network}")
        document = DIDDocument.from_json(txn.body.get("document"))  # type: ignore[arg-type]
        if str(document.id) != did:
            raise EnrollmentError(f"the document is about {document.id}, not the submitter {did}")
        key = document.public_key_for(signature.verification_method, "capabilityInvocation")
        check_self_certifying(did, key)
        key.verify(signing_input(txn.id_bytes), decode_base58btc(signature.signature))
    except (DidRegistryError, ValueError, TypeError, AttributeError) as exc:
        raise EnrollmentError(f"the enrolment transaction does not prove the key of {did}: {exc}") from None
    return txn


def _wallet_for(directory: Path, passphrase: str, network: str, params: KdfParams) -> DeviceWallet:
    """The device wallet in ``directory``: a new key, or the key of an unfinished earlier attempt."""
    if (directory / KEYSTORE_FILE).exists():
        wallet = DeviceWallet.open(directory, passphrase)
        assert isinstance(wallet, DeviceWallet)
        try:
            if parse_trellis_did(wallet.did).network != network:
                raise EnrollmentError(f"the wallet in {directory} belongs to another network ({wallet.did})")
        except DidRegistryError:
            raise EnrollmentError(
                f"the wallet in {directory} holds {wallet.did}, not a did:trellis"
            ) from None
        if wallet.credentials("DeviceCredential"):
            raise EnrollmentError(f"the wallet in {directory} is already enrolled as {wallet.did}")
        return wallet
    key = Ed25519PrivateKey.generate()
    did = str(trellis_did(network, key.public_key))
    wallet = DeviceWallet.create(directory, passphrase, key=key, did=did, params=params)
    assert isinstance(wallet, DeviceWallet)
    return wallet


def _refusal(response: httpx.Response) -> EnrollmentError:
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, Mapping):
        problem = {}
    detail = str(problem.get("detail") or problem.get("title") or response.text[:200])
    code = problem.get("code")
    return EnrollmentError(
        f"the portal refused the enrolment (HTTP {response.status_code}): {detail}",
        status=response.status_code,
        code=code if isinstance(code, str) else None,
    )


def verify_enrolment(
    payload: EnrolmentPayload,
    did: str,
    credential: Mapping[str, Any],
    *,
    http: httpx.Client,
    ledger_transport: httpx.BaseTransport | None = None,
) -> None:
    """Check the portal's answer against the ledger itself, trusting no node and not the portal.

    The genesis fetched from a node must hash to the payload's ``genesis``; then, with every answer
    proven against it, ``did`` must be on the ledger, the credential must verify (issuer key and
    status from the ledger) and its issuer must be accredited for ``DeviceCredential``.
    """
    genesis: Genesis | None = None
    for node in payload.nodes:
        try:
            fetched = Genesis.from_json(http.get(node.rstrip("/") + "/genesis").raise_for_status().json())
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, OverflowError, DidRegistryError):
            continue
        if fetched.hash.hex() == payload.genesis:
            genesis = fetched
            break
    if genesis is None:
        raise EnrollmentError(f"no node served the genesis {payload.genesis[:16]}… the payload names")
    with LedgerClient(list(payload.nodes), genesis, transport=ledger_transport) as ledger:
        try:
            record, _ = ledger.resolve_record(did)
            if record is None or record["deactivated"]:
                raise EnrollmentError(f"{did} is not on the ledger")
            verified = verify_credential(
                credential,
                ResolverKeyLookup(TrellisResolver(ledger)),
                status_check=LedgerStatusCheck(lambda key: ledger.prove(key)[0]),
            )
            accredited, _ = ledger.prove(f"trust:{verified.issuer}")
            if DEVICE_CREDENTIAL_TYPE not in (accredited or []):
                raise EnrollmentError(f"{verified.issuer} is not accredited for {DEVICE_CREDENTIAL_TYPE}")
        except LedgerUnavailable as exc:
            raise EnrollmentError(f"cannot read the ledger: {exc}") from None
        except VerificationFailed as exc:
            raise EnrollmentError(f"the credential from the portal does not verify: {exc}") from None


def enroll(
    source: str | Path,
    wallet_dir: str | Path,
    passphrase: str,
    *,
    http: httpx.Client | None = None,
    decode_image: ImageDecoder = read_qr_image,
    params: KdfParams = KDF_MODERATE,
    verify: bool = True,
    ledger_transport: httpx.BaseTransport | None = None,
    timeout: float = 60.0,
) -> DeviceWallet:
    """Enrol this device with the portal named in ``source`` and keep its credential in ``wallet_dir``.

    ``source`` is the payload's JSON text, or a file with that text or with the QR code's image.
    With ``verify`` (the default) the answer is checked against the ledger (:func:`verify_enrolment`)
    before the credential is kept.
    """
    payload = load_payload(source, decode_image=decode_image)
    wallet = _wallet_for(Path(wallet_dir), passphrase, payload.network, params)
    txn = enrolment_transaction(payload.network, wallet.key)
    client = http or httpx.Client(timeout=timeout)
    try:
        try:
            response = client.post(
                payload.portal + ENROL_PATH, json={"token": payload.token, "txn": txn.to_json()}
            )
        except (httpx.HTTPError, httpx.InvalidURL, OverflowError) as exc:
            raise EnrollmentError(f"cannot reach the portal at {payload.portal}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise _refusal(response)
        try:
            answer = response.json()
            credential = answer["credential"]
            if answer.get("did", wallet.did) != wallet.did:
                raise EnrollmentError(f"the portal answered for {answer['did']}, not for {wallet.did}")
            check_credential(credential)
        except (ValueError, KeyError, TypeError, MalformedDocument) as exc:
            raise EnrollmentError(f"the portal's answer holds no usable credential: {exc}") from None
        if verify:
            verify_enrolment(payload, wallet.did, credential, http=client, ledger_transport=ledger_transport)
    finally:
        if http is None:
            client.close()
    try:
        wallet.store(credential)
    except MalformedDocument as exc:
        raise EnrollmentError(f"the portal's answer holds no usable credential: {exc}") from None
    return wallet
