"""The fast path of :meth:`Verifier.authenticate_request` for requests signed the way devices sign them.

A device signs every request alike (``wallet.device_client``): one signature, written canonically,
covering ``@method``, ``@target-uri`` and ``content-digest``. For such a request
:func:`wallet.http_signatures.fast_signature_base` reads the signature and builds its base without
building any intermediate object, and the checks of :mod:`verifier._signed` run here in the same
order, from what stays the same between a device's requests: its authentication key, remembered
per key id while the cached DID entry it came from stands (``LedgerView.authentication_key``), and,
within a session, HMAC-SHA256 keyed with the session key (RFC 2104's inner and outer SHA-256 states
after the padded key), copied per request.

Any request of another shape (several signatures, RFC 9421 §4.3, among them), or that a check before
the nonce is used would refuse, is handed to :func:`verifier._signed.authenticate_request` whole, so every refusal is the general path's own;
from the key lookup on, what this path refuses (a key not authorised, a bad signature or digest,
a replayed nonce, a credential) it refuses exactly as the general path does at the same step.
"""

from __future__ import annotations

from binascii import b2a_base64
from collections import OrderedDict
from collections.abc import Mapping
from hashlib import blake2b, sha256
from hmac import compare_digest
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from did_registry.bounded_cache import remember
from did_registry.errors import BadSignature
from verifier import _signed
from verifier._checks import AuthenticatedDevice
from verifier.errors import Reason, Refused
from wallet.content_digest import verify_content_digest
from wallet.credential import did_of
from wallet.errors import DigestMismatch, HttpSignatureError, MalformedDigestHeader, SignatureMismatch
from wallet.http_signatures import HMAC_MIN_KEY_SIZE, FastSignature, HttpRequest, fast_signature_base

if TYPE_CHECKING:
    from _hashlib import HASH

    from verifier.verifier import Verifier

__all__ = ["MAC_STATES_KEPT", "ORIGINS_KEPT", "MacState", "authenticate_request", "hmac_sha256", "mac_state"]

MAC_STATES_KEPT: Final = 4096
"""Session keys whose keyed HMAC-SHA256 is remembered (the most recently used)."""
ORIGINS_KEPT: Final = 1024
"""Request URLs whose authority and origin are remembered (none longer than ``_signed.URL_MEMO_MAX``)."""
MacState: TypeAlias = "tuple[HASH, HASH]"
"""SHA-256 after HMAC's inner padded key, and after its outer padded key (RFC 2104)."""
_REQUIRED_COMPONENTS: Final = _signed.REQUIRED_COMPONENTS
_REQUIRED: Final = frozenset(_REQUIRED_COMPONENTS)
_NAMESPACE: Final = _signed.SIGNATURE_NAMESPACE
_URL_MEMO_MAX: Final = _signed.URL_MEMO_MAX
_RECORD_MAX: Final = _signed.REPLAY_RECORD_MAX
_BLOCK: Final = 64  # SHA-256's block size in bytes, RFC 2104's B
_IPAD: Final = bytes(byte ^ 0x36 for byte in range(256))  # byte -> byte XOR ipad, for bytes.translate
_OPAD: Final = bytes(byte ^ 0x5C for byte in range(256))  # byte -> byte XOR opad
_MACS: OrderedDict[bytes, MacState] = OrderedDict()
_ORIGINS: OrderedDict[str, tuple[str, str]] = OrderedDict()  # request URL -> (authority, origin)


def mac_state(key: bytes) -> MacState:
    """HMAC-SHA256 keyed with ``key`` (RFC 2104: a key longer than a block hashed first, then padded),
    as the two SHA-256 states after its padded keys, to be copied for each message: the key's own
    work is done once per session key, not per request."""
    known = _MACS.get(key)
    if known is None:
        block = (sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
        known = (sha256(block.translate(_IPAD)), sha256(block.translate(_OPAD)))
        remember(_MACS, key, known, MAC_STATES_KEPT)
    return known


def hmac_sha256(state: MacState, message: bytes) -> bytes:
    """HMAC-SHA256 of ``message`` under the key of ``state`` from :func:`mac_state` (the states are
    copied, never changed)."""
    inner = state[0].copy()
    inner.update(message)
    outer = state[1].copy()
    outer.update(inner.digest())
    return outer.digest()


def authenticate_request(
    verifier: Verifier, request: HttpRequest, audience: str | None, credential: Mapping[str, Any] | None
) -> AuthenticatedDevice:
    """:func:`verifier._signed.authenticate_request`, faster for requests in the devices' shape."""
    fast = fast_signature_base(request) if type(request) is HttpRequest else None
    if fast is None:
        return _signed.authenticate_request(verifier, request, audience, credential)
    components, label, keyid, alg, created, expires, nonce, signature, base = fast
    now = verifier.clock()
    policy = verifier.policy
    skew, max_age = policy.clock_skew, policy.signature_max_age
    if (
        not keyid
        or not nonce
        or created is None
        or created > now + skew
        or created < now - max_age - skew
        or (expires is not None and now > expires + skew)
        or (components != _REQUIRED_COMPONENTS and not _REQUIRED.issubset(components))
    ):
        return _signed.authenticate_request(verifier, request, audience, credential)
    url = request.url
    origins = _ORIGINS.get(url)
    if origins is None:
        origins = _signed._audience_of(request)
        if len(url) <= _URL_MEMO_MAX:  # a longer one is split again each time, not kept
            remember(_ORIGINS, url, origins, ORIGINS_KEPT)
    if audience is not None and audience != origins[0] and audience != origins[1]:
        return _signed.authenticate_request(verifier, request, audience, credential)
    target = audience or origins[1]
    replay_until = created + max_age + 2 * skew
    if alg == "hmac-sha256" or not keyid.startswith("did:"):
        device = _session(verifier, request, fast, target, now, replay_until)
        return device or _signed.authenticate_request(verifier, request, audience, credential)
    if alg is not None and alg != "ed25519":
        return _signed.authenticate_request(verifier, request, audience, credential)
    # From here on, a refusal is the general path's at the same step.
    ledger = verifier.ledger
    known = ledger.remembered_key(keyid)
    if known is None:
        did = did_of(keyid)
        entry, key = ledger.authentication_key(did, keyid)
    else:
        did, entry, key = known
    try:
        key.verify(base, signature)
    except BadSignature:
        mismatch = SignatureMismatch("ed25519 signature does not verify", label=label)
        raise Refused(Reason.BAD_SIGNATURE, str(mismatch), did=did) from None
    digest, body = request.headers["content-digest"], request.body  # covered, so present
    if digest != f"sha-256=:{b2a_base64(sha256(body).digest(), newline=False).decode()}:":
        _check_digest(digest, body, did)  # not the one canonical field of the body's digest
    try:  # from here on the device has proven who it is
        record = f"{keyid} {nonce}"  # _signed.replay_record, inline
        if len(record) > _RECORD_MAX:
            record = blake2b(record.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        if not verifier.nonces.use(_NAMESPACE, record, replay_until):
            raise Refused(Reason.REPLAYED, "the signature's nonce was already used", did=did)
        if credential is not None:
            return verifier._admit(did, entry, keyid, [credential], target, now)
        try:
            header = request.headers[_signed.CREDENTIAL_HEADER]
        except KeyError:
            raise Refused(Reason.CREDENTIAL_MISSING, "no Device-Credential header", did=did) from None
        admissions = verifier._admissions
        remembering = verifier.sessions is None  # with sessions, each request opens one: nothing to remember
        if remembering:
            device = admissions.device(keyid, header, entry, now)
            if device is not None:
                return device
        decoded = _signed._remembered_credential(header)  # an object of _signed's own, which nobody changes
        device = verifier._admit(did, entry, keyid, [decoded], target, now, remember=True)
        if remembering:
            admissions.remember_device(keyid, header, entry, decoded, device)
        return device
    except Refused as refused:
        _signed.proven(refused, did)
        raise


def _session(
    verifier: Verifier,
    request: HttpRequest,
    fast: FastSignature,
    audience: str,
    now: float,
    replay_until: float,
) -> AuthenticatedDevice | None:
    _, label, keyid, alg, _, _, nonce, signature, base = fast
    assert keyid is not None
    sessions = verifier.sessions
    session = None if sessions is None else sessions.get(keyid)
    if (
        session is None
        or now >= session.expires_at
        or (alg is not None and alg != "hmac-sha256")
        or len(session.key) < HMAC_MIN_KEY_SIZE
    ):
        return None
    key, did = session.key, session.did
    if not compare_digest(hmac_sha256(_MACS.get(key) or mac_state(key), base), signature):
        mismatch = SignatureMismatch("hmac-sha256 signature does not verify", label=label)
        raise Refused(Reason.BAD_SIGNATURE, str(mismatch), did=did)
    digest, body = request.headers["content-digest"], request.body  # covered, so present
    if digest != f"sha-256=:{b2a_base64(sha256(body).digest(), newline=False).decode()}:":
        _check_digest(digest, body, did)  # not the one canonical field of the body's digest
    if session.audience != audience:
        return None
    try:  # from here on the device has proven who it is (it holds the session key)
        record = f"{keyid} {nonce}"  # _signed.replay_record, inline
        if len(record) > _RECORD_MAX:
            record = blake2b(record.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        if not verifier.nonces.use(_NAMESPACE, record, replay_until):
            raise Refused(Reason.REPLAYED, "the signature's nonce was already used", did=did)
        if did.startswith("did:trellis:"):  # session_device, with its memo read
            device = verifier._admissions.session_device(session.id, did, session.key_id)
            if device is not None:
                return device
        return _signed._check_session(verifier, session)
    except Refused as refused:
        _signed.proven(refused, did)
        raise


def _check_digest(value: str, body: bytes, did: str) -> None:
    """Check ``body`` against its ``Content-Digest`` ``value`` as the general path does. The callers
    first compare ``value`` with the one canonical field of the body's ``sha-256`` digest, which this
    check would find the same."""
    try:
        verify_content_digest(value, body)
    except DigestMismatch as exc:
        raise Refused(Reason.DIGEST_MISMATCH, str(exc), did=did) from None
    except (MalformedDigestHeader, HttpSignatureError) as exc:
        raise Refused(Reason.MALFORMED, str(exc), did=did) from None
