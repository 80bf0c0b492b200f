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
import ipaddress
import json
import re
import string
import time
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
    "MAX_ANSWER_BYTES",
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
MAX_ANSWER_BYTES: Final = 1 << 20
"""The most bytes (1 MiB, after content decoding) read of one answer from the portal or a node during
enrolment; the answers are a few kB. A longer answer is refused without reading the rest."""

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


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost``, 127.0.0.0/8 or ``::1``."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_http_url(value: object, *, allow_http: bool = False) -> bool:
    """Whether ``value`` is an https URL with a host that a client can reach (``https://[::1`` is not),
    and with no user info, query or fragment. Plain http is accepted for a loopback host, or for any
    host with ``allow_http`` (tests that serve made-up hosts over a mock transport)."""
    if not isinstance(value, str) or not value.startswith(("https://", "http://")) or not value.isprintable():
        return False
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError, TypeError):
        return False
    if not url.host or " " in url.host or not (url.port is None or 0 < url.port < 65536):
        return False
    if url.userinfo or url.query or url.fragment or "?" in value or "#" in value:
        return False
    return url.scheme == "https" or allow_http or _is_loopback(url.host)


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
    def from_json(cls, data: object, *, allow_http: bool = False) -> EnrolmentPayload:
        """Parse and check a payload object; raise :class:`EnrollmentError` saying what is wrong.

        The portal and every node must be https URLs without user info, query or fragment; plain http
        only for a loopback host (``localhost``, 127.0.0.0/8, ``::1``), or any host with ``allow_http``
        (for tests). At least one node is required.
        """
        if not isinstance(data, Mapping):
            raise EnrollmentError("an enrolment payload is a JSON object")
        if data.get("type") != PAYLOAD_TYPE:
            raise EnrollmentError(f"not a {PAYLOAD_TYPE} payload (type {data.get('type')!r})")
        if data.get("v") != PAYLOAD_VERSION:
            raise EnrollmentError(f"unsupported payload version {data.get('v')!r}")
        portal, token, network = data.get("portal"), data.get("token"), data.get("network")
        genesis, nodes = data.get("genesis"), data.get("nodes")
        if not isinstance(portal, str) or not _is_http_url(portal, allow_http=allow_http):
            raise EnrollmentError(
                "portal must be an https URL (http only on loopback) without user info, query or fragment"
            )
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
            or not nodes
            or not all(_is_http_url(n, allow_http=allow_http) for n in nodes)
        ):
            raise EnrollmentError(
                "nodes must be a non-empty array of https URLs (http only on loopback) "
                "without user info, query or fragment"
            )
        return cls(portal.rstrip("/"), token, network, genesis, tuple(nodes))

    @classmethod
    def decode(cls, text: str, *, allow_http: bool = False) -> EnrolmentPayload:
        """Parse the JSON text of a payload (see :meth:`from_json` for ``allow_http``)."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise EnrollmentError(f"the enrolment payload is not JSON: {exc}") from None
        return cls.from_json(data, allow_http=allow_http)


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
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # (a corrupt header is a ValueError or SyntaxError in Pillow; a huge one a decompression bomb)
        raise EnrollmentError(f"cannot read an image from {where}: {exc}") from None
    if not found:
        raise EnrollmentError(f"no QR code found in {where}")
    return found[0].text


_LEADING: Final = "\ufeff" + string.whitespace  # a byte order mark (some QR apps add one), blanks


def load_payload(
    source: str | Path, *, decode_image: ImageDecoder = read_qr_image, allow_http: bool = False
) -> EnrolmentPayload:
    """The payload from its JSON text, a file holding that text, or a QR image file.

    Text starting with ``{`` (after a byte order mark and blanks) is the payload. The error for a
    source that is neither never repeats a text source: it may hold the one-time token.
    """
    if isinstance(source, str):
        text = source.lstrip(_LEADING)
        if text.startswith("{"):
            return EnrolmentPayload.decode(text, allow_http=allow_http)
    path = Path(source)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL: not a file
        is_file = False
    if not is_file:
        named = str(source) if isinstance(source, Path) else f"the text given ({len(source)} characters)"
        raise EnrollmentError(f"{named} is neither an enrolment payload (JSON text) nor a file")
    data = path.read_bytes().lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()  # blanks, UTF-8 BOM
    if data.startswith(b"{"):
        return EnrolmentPayload.decode(data.decode("utf-8", errors="replace"), allow_http=allow_http)
    return EnrolmentPayload.decode(decode_image(path), allow_http=allow_http)


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


@dataclass(frozen=True, slots=True)
class _Answer:
    """An HTTP answer read whole: its status and its (decoded) body."""

    status: int
    body: bytes


def _exchange(
    client: httpx.Client, method: str, url: str, *, what: str, deadline: float, json_body: Any = None
) -> _Answer:
    """Send one request and read its answer, at most :data:`MAX_ANSWER_BYTES` of body and by
    ``deadline`` (a :func:`time.monotonic` time) at the latest: a server trickling its answer is given
    up on at the first chunk after the deadline. ``what`` names the server in the errors."""
    try:
        with client.stream(method, url, json=json_body) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                raise EnrollmentError(
                    f"{what} answered {declared} bytes, more than the {MAX_ANSWER_BYTES} accepted"
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise EnrollmentError(f"{what} answered more than the {MAX_ANSWER_BYTES} bytes accepted")
                if time.monotonic() > deadline:
                    raise EnrollmentError(f"{what} did not answer in time")
            if time.monotonic() > deadline:
                raise EnrollmentError(f"{what} did not answer in time")
            return _Answer(response.status_code, bytes(body))
    except (httpx.HTTPError, httpx.InvalidURL, OverflowError) as exc:
        raise EnrollmentError(f"cannot reach {what}: {exc}") from None


def _printable(text: str, limit: int = 300) -> str:
    """``text`` from a server, safe to print on a terminal: control characters (escape sequences
    among them, which could retitle the terminal or fake the output) shown escaped, and cut to
    ``limit`` characters."""
    shown = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text[:limit])
    return shown + ("…" if len(text) > limit else "")


def _refusal(answer: _Answer) -> EnrollmentError:
    try:
        problem = json.loads(answer.body)
    except (ValueError, RecursionError):
        problem = {}
    if not isinstance(problem, Mapping):
        problem = {}
    detail = _printable(
        str(
            problem.get("detail")
            or problem.get("title")
            or answer.body[:200].decode("utf-8", errors="replace")
        )
    )
    code = problem.get("code")
    return EnrollmentError(
        f"the portal refused the enrolment (HTTP {answer.status}): {detail}",
        status=answer.status,
        code=code if isinstance(code, str) else None,
    )


def verify_enrolment(
    payload: EnrolmentPayload,
    did: str,
    credential: Mapping[str, Any],
    *,
    http: httpx.Client,
    ledger_transport: httpx.BaseTransport | None = None,
    timeout: float = 60.0,
) -> None:
    """Check the portal's answer against the ledger itself, trusting no node and not the portal.

    The genesis fetched from a node must hash to the payload's ``genesis``; then, with every answer
    proven against it, ``did`` must be on the ledger, the credential must verify (issuer key and
    status from the ledger) and its issuer must be accredited for ``DeviceCredential``. A node whose
    genesis answer is not a genesis (an error, too big, too slow: ``timeout`` seconds for the whole
    exchange, too deeply nested) is passed over for the next.
    """
    genesis: Genesis | None = None
    for node in payload.nodes:
        try:
            answer = _exchange(
                http,
                "GET",
                node.rstrip("/") + "/genesis",
                what=f"the node at {node}",
                deadline=time.monotonic() + timeout,
            )
            if not 200 <= answer.status < 300:
                continue
            fetched = Genesis.from_json(json.loads(answer.body))
        except (EnrollmentError, ValueError, TypeError, OverflowError, RecursionError, DidRegistryError):
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
        except RecursionError:
            raise EnrollmentError("the credential from the portal is nested too deeply") from None


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
    allow_http: bool = False,
) -> DeviceWallet:
    """Enrol this device with the portal named in ``source`` and keep its credential in ``wallet_dir``.

    ``source`` is the payload's JSON text, or a file with that text or with the QR code's image.
    With ``verify`` (the default) the answer is checked against the ledger (:func:`verify_enrolment`)
    before the credential is kept. ``timeout`` bounds each exchange with the portal or a node as a
    whole (request to last byte), and each read of a client made here; an answer longer than
    :data:`MAX_ANSWER_BYTES` is refused. ``allow_http`` accepts plain-http portals and nodes on any
    host (for tests; see :meth:`EnrolmentPayload.from_json`).
    """
    payload = load_payload(source, decode_image=decode_image, allow_http=allow_http)
    wallet = _wallet_for(Path(wallet_dir), passphrase, payload.network, params)
    txn = enrolment_transaction(payload.network, wallet.key)
    client = http or httpx.Client(timeout=timeout)
    try:
        response = _exchange(
            client,
            "POST",
            payload.portal + ENROL_PATH,
            what=f"the portal at {payload.portal}",
            deadline=time.monotonic() + timeout,
            json_body={"token": payload.token, "txn": txn.to_json()},
        )
        if not 200 <= response.status < 300:
            raise _refusal(response)
        try:
            answer = json.loads(response.body)
            credential = answer["credential"]
            if answer.get("did", wallet.did) != wallet.did:
                raise EnrollmentError(f"the portal answered for {answer['did']}, not for {wallet.did}")
            check_credential(credential)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, MalformedDocument) as exc:
            raise EnrollmentError(f"the portal's answer holds no usable credential: {exc}") from None
        if verify:
            verify_enrolment(
                payload,
                wallet.did,
                credential,
                http=client,
                ledger_transport=ledger_transport,
                timeout=timeout,
            )
    finally:
        if http is None:
            client.close()
    try:
        wallet.store(credential)
    except (MalformedDocument, RecursionError) as exc:
        raise EnrollmentError(f"the portal's answer holds no usable credential: {exc}") from None
    return wallet
