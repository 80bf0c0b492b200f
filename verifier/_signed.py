"""RFC 9421 signed requests: a device key (``ed25519``) or, within a session, the session key (``hmac-sha256``).

The signature must cover ``@method``, ``@target-uri`` and ``content-digest`` (RFC 9530, so the body
is signed too), carry ``created`` (no older than the policy's ``signature_max_age``, not in the
future beyond the clock skew), may carry ``expires``, and must carry a ``nonce``, which is used once
(recorded in the nonce store after the signature verifies, so a forger cannot burn a device's
nonces). With ``ed25519`` the ``keyid`` is a DID URL of a key in the device's ``authentication``
relationship; the device's credential rides in the ``Device-Credential`` header as base64url of its
JSON (there is no standard header for a VC; the header is not part of the signature because the
credential carries its own issuer's proof and must name the signing device). With
``hmac-sha256`` the ``keyid`` is a session id.

A request may carry several signatures (RFC 9421 §4.3: a proxy may add its own). The one checked is
the first, in ``Signature-Input`` order, that covers the required components and has a ``keyid`` (a
DID URL, or else a session id); the others are ignored. A request with none such is refused
``malformed``, naming what each signature lacks.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from hashlib import blake2b
from typing import TYPE_CHECKING, Any, Final, NoReturn

from did_registry.bounded_cache import BoundedCache, WeightedCache
from did_registry.identity.crypto import Ed25519PublicKey
from verifier._checks import AuthenticatedDevice, check_issuer_standing
from verifier._records import AUTHENTICATION, DIDEntry
from verifier.errors import Reason, Refused
from wallet.credential import did_of
from wallet.device_client import encode_device_credential as encode_credential_header
from wallet.errors import (
    DigestMismatch,
    HttpSignatureError,
    MalformedDigestHeader,
    MissingComponent,
    SignatureMismatch,
)
from wallet.http_signatures import HttpRequest, SignatureInput, parse_signatures, split_url, verify_signature

if TYPE_CHECKING:
    from verifier.ledger_cache import LedgerCache
    from verifier.sessions import Session
    from verifier.verifier import Verifier

__all__ = [
    "CREDENTIAL_HEADER",
    "REQUIRED_COMPONENTS",
    "SIGNATURE_NAMESPACE",
    "SESSION_NAMESPACE",
    "proven",
    "remember_session",
    "session_device",
    "authentication_lookup",
    "check_authorized",
    "authenticate_request",
    "dids_in",
    "encode_credential_header",
    "replay_record",
]

CREDENTIAL_HEADER: Final = "device-credential"
"""The request header carrying the device's credential (base64url of its JSON)."""
REQUIRED_COMPONENTS: Final = ("@method", "@target-uri", "content-digest")
"""What a device's request signature must cover."""
SIGNATURE_NAMESPACE: Final = "signature"
"""The nonce store namespace of used request nonces."""
SESSION_NAMESPACE: Final = "session-history"
"""The nonce store namespace remembering, for a while, when sessions expire and why they were ended."""
_MAX_CREDENTIAL: Final = 64 * 1024
URL_MEMO_MAX: Final = 2048
"""The longest request URL whose authority and origin are remembered (longer ones are split every time)."""


def _decode_credential(value: str) -> Any:
    """The credential a ``Device-Credential`` header carries, decoded afresh: nothing is remembered
    (:func:`dids_in` reads headers before any signature is checked; see :func:`_remembered_credential`)."""
    return _decoded(value)[0]


def _decoded(value: str) -> tuple[Any, bytes]:
    """The credential a header carries, and the JSON text it was read from."""
    if len(value) > _MAX_CREDENTIAL:
        raise Refused(Reason.MALFORMED, "Device-Credential is too large")
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return json.loads(text), text
    except (ValueError, binascii.Error) as exc:
        raise Refused(Reason.MALFORMED, f"Device-Credential is not base64url JSON: {exc}") from None
    except RecursionError:  # arrays or objects nested deeper than the parser goes
        raise Refused(Reason.MALFORMED, "Device-Credential is JSON nested too deeply") from None


def _remembered_credential(value: str) -> Any:
    """The credential a header carries; the same header gives the same (read-only) object while it is
    remembered, so the checks can remember what they verified about it (``_checks._VerifiedCredentials``).
    Only a JSON object (what a credential is) is remembered, weighed by :func:`_weight`."""
    known = _DECODED.get(value)
    if known is not None:
        return known
    decoded, text = _decoded(value)
    if type(decoded) is dict:
        _DECODED.put(value, decoded, _weight(value, text))
    return decoded


def _weight(header: str, text: bytes) -> int:
    """An upper estimate of the bytes a remembered header takes, with the objects its JSON ``text``
    decodes to (CPython 3.11, 64-bit; checked with tracemalloc against hostile shapes in
    ``tests/verifier/test_memo_bounds.py``): 512 bytes for the entry and the objects' headers; the
    header string; the text itself, four bytes a character if a string may be wider than Latin-1;
    and 192 bytes an object (a dict with members takes 184), 96 an array (88 once appended to), 64 a
    separator (an element's slot, a float, a number) and 32 a quote (two a string: its object's
    header). A typical device credential (1.3 KB of header) weighs about 7.6 KB against some 4.4 KB
    taken; ``[{},{},…]`` weighs 3.5 times what it takes."""
    chars = len(text) if text.isascii() and b"\\u" not in text else 4 * len(text)
    return (
        512 + len(header) + chars + 192 * text.count(b"{") + 96 * text.count(b"[")
        + 64 * text.count(b",") + 32 * text.count(b'"')
    )  # fmt: skip


DECODED_KEPT: Final = 4096
"""The credential headers whose decoded credential is remembered (the devices seen most recently)."""
DECODED_WEIGHT: Final = 32 * 1024 * 1024
"""What those may weigh in all (:func:`_weight`, at least their bytes): some 4,400 typical credentials,
or a handful of the largest hostile ones."""
_DECODED: WeightedCache[str, Any] = WeightedCache(DECODED_KEPT, DECODED_WEIGHT)


def authentication_lookup(holder: str, entry: DIDEntry) -> Any:
    """A key lookup that accepts only keys of ``holder``'s ``authentication`` relationship."""

    def lookup(method: str, purpose: str) -> Ed25519PublicKey:
        check_authorized(holder, entry, method)
        key = entry.key(method.partition("#")[2], AUTHENTICATION)
        assert key is not None
        return key

    return lookup


def check_authorized(holder: str, entry: DIDEntry, method: str) -> None:
    """Refuse ``method`` unless it is a key of ``holder``'s ``authentication`` relationship."""
    if did_of(method) != holder:
        raise Refused(Reason.KEY_NOT_AUTHORIZED, f"{method} is not a key of {holder}", did=holder)
    if not entry.serves(method.partition("#")[2], AUTHENTICATION):
        raise Refused(
            Reason.KEY_NOT_AUTHORIZED, f"{method} is not in the authentication relationship", did=holder
        )


def _audience_of(request: HttpRequest) -> tuple[str, str]:
    url = request.url
    known = _AUDIENCES.get(url)
    if known is None:
        parts = split_url(url)  # a long one is kept neither here nor in urlsplit's own cache
        known = (parts.netloc, f"{parts.scheme}://{parts.netloc}")
        if len(url) <= URL_MEMO_MAX:
            _AUDIENCES.put(url, known)
    return known


_AUDIENCES: BoundedCache[str, tuple[str, str]] = BoundedCache(1024)  # request URL -> (authority, origin)


def _check_times(verifier: Verifier, sig: SignatureInput, now: float) -> float:
    policy = verifier.policy
    if sig.created is None:
        raise Refused(Reason.MALFORMED, "the signature has no created parameter")
    if sig.created > now + policy.clock_skew:
        raise Refused(Reason.SIGNATURE_EXPIRED, "the signature was created in the future")
    if sig.created < now - policy.signature_max_age - policy.clock_skew:
        raise Refused(
            Reason.SIGNATURE_EXPIRED, f"the signature is older than {policy.signature_max_age:.0f} s"
        )
    if sig.expires is not None and now > sig.expires + policy.clock_skew:
        raise Refused(Reason.SIGNATURE_EXPIRED, "the signature has expired")
    if sig.nonce is None or not sig.nonce:
        raise Refused(Reason.MALFORMED, "the signature has no nonce")
    return sig.created + policy.signature_max_age + 2 * policy.clock_skew


def _verify(
    request: HttpRequest, sig: SignatureInput, key: Ed25519PublicKey | bytes, did: str | None
) -> None:
    try:
        verify_signature(request, sig, key)
    except SignatureMismatch as exc:
        raise Refused(Reason.BAD_SIGNATURE, str(exc), did=did) from None
    except (DigestMismatch, MissingComponent) as exc:
        raise Refused(Reason.DIGEST_MISMATCH, str(exc), did=did) from None
    except (MalformedDigestHeader, HttpSignatureError) as exc:
        raise Refused(Reason.MALFORMED, str(exc), did=did) from None


REPLAY_RECORD_MAX: Final = 128
"""The longest replay record written out (a device's key id and 22-character nonce take about 70)."""


def replay_record(keyid: str, nonce: str) -> str:
    """What a signature's nonce is recorded as in :data:`SIGNATURE_NAMESPACE`: ``"<keyid> <nonce>"``,
    or, when that is longer than :data:`REPLAY_RECORD_MAX` characters, its 128-bit BLAKE2b digest in
    32 hex characters (which has no space, so it is never another signature's record written out):
    a record takes a bounded size however long the ``keyid`` and ``nonce`` are (both are bounded only
    by the 8 KiB ``Signature-Input``), and a device's record is the same as it always was. The fast
    path (``_fast``) records the same value."""
    record = f"{keyid} {nonce}"
    if len(record) > REPLAY_RECORD_MAX:
        record = blake2b(record.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return record


def _use_nonce(verifier: Verifier, sig: SignatureInput, expires_at: float, did: str) -> None:
    """Use the nonce of a signature that verified (a replay names ``did``; callers mark it :func:`proven`)."""
    assert sig.nonce is not None and sig.keyid is not None
    if not verifier.nonces.use(SIGNATURE_NAMESPACE, replay_record(sig.keyid, sig.nonce), expires_at):
        raise Refused(Reason.REPLAYED, "the signature's nonce was already used", did=did)


def proven(refused: Refused, did: str) -> None:
    """Mark ``refused``, raised after a signature of ``did`` verified, as authenticated if it names ``did``."""
    if refused.did == did:
        refused.authenticated = True


def _signature(request: HttpRequest) -> SignatureInput:
    try:
        signatures = parse_signatures(request.headers)
    except HttpSignatureError as exc:
        raise Refused(Reason.MALFORMED, str(exc)) from None
    if not signatures:
        raise Refused(Reason.MALFORMED, "the request carries no Signature-Input and Signature")
    sig = _chosen(signatures)
    if sig is None:
        shortfalls = "; ".join(f"signature {s.label!r} {_shortfall(s)}" for s in signatures)
        raise Refused(Reason.MALFORMED, f"no signature meets the policy: {shortfalls}")
    return sig


def _chosen(signatures: Sequence[SignatureInput]) -> SignatureInput | None:
    """The first signature that covers the required components and has a ``keyid``, if any."""
    for sig in signatures:
        if sig.keyid and all(c in sig.components for c in REQUIRED_COMPONENTS):
            return sig
    return None


def _shortfall(sig: SignatureInput) -> str:
    """What keeps ``sig`` from being chosen, in words."""
    lacks = []
    missing = [c for c in REQUIRED_COMPONENTS if c not in sig.components]
    if missing:
        lacks.append(f"does not cover {', '.join(missing)}")
    if not sig.keyid:
        lacks.append("has no keyid")
    return " and ".join(lacks)


def authenticate_request(
    verifier: Verifier, request: HttpRequest, audience: str | None, credential: Mapping[str, Any] | None
) -> AuthenticatedDevice:
    """Check a signed request (see the module docstring)."""
    if not isinstance(request, HttpRequest):
        raise Refused(Reason.MALFORMED, "expected a wallet.http_signatures.HttpRequest")
    sig = _signature(request)
    now = verifier.clock()
    replay_until = _check_times(verifier, sig, now)
    authority, origin = _audience_of(request)
    if audience is not None and audience not in (authority, origin):
        raise Refused(Reason.WRONG_AUDIENCE, f"the request is for {origin}, not {audience}")
    assert sig.keyid is not None
    if sig.alg == "hmac-sha256" or not sig.keyid.startswith("did:"):
        return _session_request(verifier, request, sig, audience or origin, replay_until)
    did = did_of(sig.keyid)
    entry, key = verifier.ledger.authentication_key(did, sig.keyid)
    _verify(request, sig, key, did)
    try:  # from here on the device has proven who it is
        _use_nonce(verifier, sig, replay_until, did)
        decoded = credential is None  # then an object of this module's own, which nobody changes
        if credential is None:
            header = request.header(CREDENTIAL_HEADER)
            if header is None:
                raise Refused(Reason.CREDENTIAL_MISSING, "no Device-Credential header", did=did)
            credential = _remembered_credential(header)
        return verifier._admit_now(did, entry, sig.keyid, [credential], audience or origin, remember=decoded)
    except Refused as refused:
        proven(refused, did)
        raise


def _session_request(
    verifier: Verifier, request: HttpRequest, sig: SignatureInput, audience: str, replay_until: float
) -> AuthenticatedDevice:
    assert sig.keyid is not None
    session = None if verifier.sessions is None else verifier.sessions.get(sig.keyid)
    if session is None:
        _refuse_gone_session(verifier, sig.keyid)
    if verifier.clock() >= session.expires_at:
        raise Refused(Reason.SESSION_EXPIRED, "the session has expired", did=session.did)
    _verify(request, sig, session.key, session.did)
    try:  # from here on the device has proven who it is (it holds the session key)
        if session.audience != audience:
            raise Refused(Reason.WRONG_AUDIENCE, f"the session is for {session.audience}", did=session.did)
        _use_nonce(verifier, sig, replay_until, session.did)
        return session_device(verifier, session)
    except Refused as refused:
        proven(refused, session.did)
        raise


def session_device(verifier: Verifier, session: Session) -> AuthenticatedDevice:
    """The device of a request in ``session``: its ledger checks remembered while they stand (else
    :func:`_check_session`), with the height they are valid at. Either way every network they read
    (the device's, the issuer's, its status lists') must be fresh enough, or ``too_stale``."""
    if session.did.startswith("did:trellis:"):  # documents resolved elsewhere are resolved every time
        device = verifier._admissions.session_device(session.id, session.did, session.key_id)
        if device is not None:
            return device
    return _check_session(verifier, session)


def _check_session(verifier: Verifier, session: Session) -> AuthenticatedDevice:
    """The ledger checks of a session's device (its key, deactivation, quarantine, status bits) and of
    its credential's issuer (accredited, not deactivated, the proof's key still its assertion key) from
    this process's caches, fresh from the header stream; a failed one ends the session, with the reason
    the full check would give. The device."""
    generation = verifier.ledger.generation()
    try:
        entry = verifier.ledger.device_entry(session.did)
        check_authorized(session.did, entry, session.key_id)
        if session.proof_method is not None:
            check_issuer_standing(
                verifier.ledger, verifier.policy, session.proof_method, session.proof_key,
                session.accredited_for, session.did,
            )  # fmt: skip
        for issuer, name, index in session.status:
            status, _ = verifier.ledger.status_list(issuer, name)
            if status is not None and status.get(index):
                reason = Reason.REVOKED if status.purpose == "revocation" else Reason.SUSPENDED
                raise Refused(reason, f"{status.purpose} bit {index} of {name} is set", did=session.did)
        if not verifier.ledger.entry_stands(session.did, entry):  # a block touched the device meanwhile
            entry = verifier.ledger.device_entry(session.did)
            check_authorized(session.did, entry, session.key_id)
    except Refused as refused:
        if refused.reason in (Reason.LEDGER_UNAVAILABLE, Reason.TOO_STALE):
            raise
        why = f"{refused.reason.value}: {refused.detail}"
        verifier.end_sessions(session.did, why, session_id=session.id, expires_at=session.expires_at)
        raise Refused(Reason.SESSION_ENDED, f"session ended: {why}", did=session.did) from None
    device = AuthenticatedDevice(session.did, session.key_id, None, max(entry.height, session.height))
    if session.did.startswith("did:trellis:") and (  # an issuer resolved elsewhere is resolved every time
        session.proof_method is None or session.proof_method.startswith(("did:trellis:", "did:key:"))
    ):
        verifier._admissions.session_checked(
            session.id, generation, device, _networks_read(verifier, session)
        )
    return device


def _networks_read(verifier: Verifier, session: Session) -> tuple[LedgerCache, ...]:
    """The caches of the networks :func:`_check_session` read: the device's, and the issuer's and its
    status lists' (``did:trellis`` ones; ``did:key`` needs no network)."""
    dids = [session.did, *(issuer for issuer, _, _ in session.status)]
    if session.proof_method is not None:
        dids.append(did_of(session.proof_method))
    caches = [verifier.ledger.cache(did) for did in dids if did.startswith("did:trellis:")]
    return tuple(dict.fromkeys(caches))


def remember_session(
    verifier: Verifier, session_id: str, expires_at: float, ended: str | None = None
) -> None:
    """Note when a session expires (or why it was ended) for one session TTL past its expiry."""
    note = json.dumps({"expires_at": expires_at, "ended": ended}).encode()
    verifier.nonces.put(SESSION_NAMESPACE, session_id, note, expires_at + verifier.policy.session_ttl)


def _refuse_gone_session(verifier: Verifier, session_id: str) -> NoReturn:
    peek = getattr(verifier.nonces, "peek", None)  # (a store of the first NonceStore protocol has none)
    if peek is not None:
        raw = peek(SESSION_NAMESPACE, session_id)  # left held: a request at the same time reads it too
    else:
        raw = verifier.nonces.take(SESSION_NAMESPACE, session_id)
    if raw is None:
        raise Refused(Reason.SESSION_UNKNOWN, "no such session")
    note = json.loads(raw)
    if peek is None:  # given back (another request between the two finds nothing: session_unknown)
        remember_session(verifier, session_id, float(note["expires_at"]), note["ended"])
    if note["ended"] is not None:
        raise Refused(Reason.SESSION_ENDED, f"session ended: {note['ended']}")
    if verifier.clock() >= float(note["expires_at"]):
        raise Refused(Reason.SESSION_EXPIRED, "the session has expired")
    raise Refused(Reason.SESSION_UNKNOWN, "the session store no longer holds this session")


def dids_in(items: Sequence[Any]) -> list[str]:
    """The device and issuer DIDs a batch of presentations and requests names (best effort: an item
    that cannot be read is left out here, and refused on its own when it is checked)."""
    dids: list[str] = []
    for item in items:
        credentials: list[Any] = []
        if isinstance(item, tuple) and item and isinstance(item[0], HttpRequest):
            item = item[0]  # (request, audience)
        if isinstance(item, HttpRequest):
            try:
                signatures = parse_signatures(item.headers)
                header = item.header(CREDENTIAL_HEADER)
                if header:  # read, never remembered: no signature has been checked yet
                    known = _DECODED.get(header)
                    credentials = [known if known is not None else _decode_credential(header)]
            except Exception:  # noqa: S112  # whatever it is, the item's own check refuses it
                continue
            chosen = _chosen(signatures)
            dids += [did_of(chosen.keyid)] if chosen is not None and chosen.keyid else []
        elif isinstance(item, tuple) and item and isinstance(item[0], Mapping):
            proof = item[0].get("proof")
            if isinstance(proof, Mapping) and isinstance(proof.get("verificationMethod"), str):
                dids.append(did_of(proof["verificationMethod"]))
            embedded = item[0].get("verifiableCredential", [])
            credentials = embedded if isinstance(embedded, list) else [embedded]
        for credential in credentials:
            issuer = credential.get("issuer") if isinstance(credential, Mapping) else None
            issuer = issuer.get("id") if isinstance(issuer, Mapping) else issuer
            if isinstance(issuer, str):
                dids.append(did_of(issuer))
    return [d for d in dict.fromkeys(dids) if d.startswith("did:trellis:")]
