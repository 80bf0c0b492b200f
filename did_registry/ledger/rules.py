"""Who may do what on the ledger: the rule table and the execution of each transaction type.

The rule table (like Indy's auth rules) in one place::

    transaction            must be signed by                                        quorum
    did.create             the new DID's self-certifying key + an endorser          1 endorser
                           (trustee, steward or issuer)
    did.update/deactivate  a capabilityInvocation key of the DID (or a controller)  1
    role.grant/revoke      holders of the roles in GRANT_RULES[role]                rules[<role>_quorum] or 1
    status_list.*          the list's issuer (who holds the issuer role)            1
    trust.accredit/withdraw trustees                                                rules.trust_quorum
    quarantine.report      a reporter                                               1
    quarantine.clear       a trustee, or the DID's endorser (its credential issuer) 1
    validator.*            trustees                                                 rules.validator_quorum

Every transaction is also signed by its submitter, and carries the submitter's next nonce.
Execution writes into a :class:`~did_registry.ledger.state.StateView` and raises
:class:`~did_registry.ledger.txn.TxnRejected` (with a code) when a rule says no.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from did_registry.bounded_cache import BoundedCache, WeightedCache
from did_registry.errors import BadSignature, DidRegistryError, InvalidDID, InvalidStatusList
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_trellis import check_self_certifying, parse_trellis_did
from did_registry.identity.jcs import canonicalize
from did_registry.identity.multibase import decode_base58btc
from did_registry.identity.multikey import decode_ed25519_public_key
from did_registry.identity.signature_memo import SignatureMemo
from did_registry.identity.status_list import BitstringStatusList
from did_registry.ledger import validators as validator_set
from did_registry.ledger.state import StateReader, StateView, encode_value
from did_registry.ledger.txn import Transaction, TxnRejected, signing_input

__all__ = [
    "ENDORSER_ROLES",
    "GRANT_RULES",
    "ROLES",
    "BlockContext",
    "committed",
    "execute",
    "did_of",
    "forget",
    "preverify",
]

ROLES = ("trustee", "steward", "issuer", "reporter", "auditor")
GRANT_RULES: Mapping[str, frozenset[str]] = {
    "trustee": frozenset({"trustee"}),
    "steward": frozenset({"trustee"}),
    "issuer": frozenset({"trustee", "steward"}),
    "reporter": frozenset({"trustee", "steward"}),
    "auditor": frozenset({"trustee", "steward"}),
}
ENDORSER_ROLES = frozenset({"trustee", "steward", "issuer"})
MAX_STATUS_CHANGES = 100_000
MAX_STATUS_LENGTH = 1 << 24
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What a transaction may know of the block it is in: network, height and the block's time."""

    network: str
    height: int
    time: str


def did_of(did_url: str) -> str:
    """The DID part of a DID URL."""
    return did_url.partition("#")[0].partition("?")[0].partition("/")[0]


def _reject(code: str, detail: str) -> TxnRejected:
    return TxnRejected(code, detail)


@lru_cache(maxsize=16384)
def _document(raw: bytes) -> DIDDocument:
    """The DID document of a stored DID record (parsed once per record version)."""
    return DIDDocument.from_json(json.loads(raw)["document"])


@lru_cache(maxsize=16384)
def _signer(raw: bytes) -> tuple[bool, DIDDocument]:
    """Whether a stored DID record says the DID is deactivated (its own member: a document may hold
    one too), and its document; parsed once per record version, as an endorser signs many."""
    record = json.loads(raw)
    return bool(record["deactivated"]), DIDDocument.from_json(record["document"])


def _record(view: StateView, did: str) -> dict[str, Any] | None:
    value: dict[str, Any] | None = view.get_json(f"did:{did}")
    return value


def _roles(view: StateView, did: str) -> list[str]:
    return list(view.get_json(f"role:{did}") or [])


_SIGNATURES = SignatureMemo(200_000)  # admission, then proposal or validation: verified once


def _verified_signers(view: StateView, txn: Transaction, pending: Mapping[str, DIDDocument]) -> set[str]:
    """The DIDs whose signatures on ``txn`` verify with a capabilityInvocation key of their document."""
    signers: set[str] = set()
    message = signing_input(txn.id_bytes)
    for signature in txn.signatures:
        did = did_of(signature.verification_method)
        document = pending.get(did)
        if document is None:
            raw = view.get(f"did:{did}")
            if raw is None:
                raise _reject("bad_signature", f"signer {did} is not on the ledger")
            deactivated, document = _signer(raw)
            if deactivated:
                raise _reject("bad_signature", f"signer {did} is deactivated")
        try:
            key = document.public_key_for(signature.verification_method, "capabilityInvocation")
            _SIGNATURES.verify(key, message, signature.signature, decode_base58btc)
        except (BadSignature, ValueError) as exc:
            raise _reject("bad_signature", f"signature by {signature.verification_method}: {exc}") from None
        except DidRegistryError as exc:
            raise _reject("bad_signature", f"{signature.verification_method} cannot sign: {exc}") from None
        signers.add(did)
    if txn.submitter not in signers:
        raise _reject("bad_signature", f"the submitter {txn.submitter} did not sign")
    return signers


def preverify(view: StateReader, txn: Transaction) -> bool:
    """Do ahead of time, and outside any lock, the costly work :func:`execute` does first: parse a
    ``did.create``'s document and check each signature whose key can be found now, remembering the
    results (the parsed documents and the signature memo). It decides nothing, changes no state and
    raises nothing: :func:`execute` checks everything again, reading those memos. Returns ``False``
    when something it checked failed (a signature, the document), which :func:`execute` will refuse
    on this head: a caller checking a batch ahead need check no further than that."""
    if txn.id_bytes in _COMMITTED:
        return True  # committed while it waited to be checked ahead: nothing will execute it again
    sound = True
    message = signing_input(txn.id_bytes)
    for signature in txn.signatures:
        did = did_of(signature.verification_method)
        try:
            if did == txn.submitter and txn.type == "did.create":
                document = _PARSED.get(txn)
            else:
                raw = view.get(f"did:{did}")
                if raw is None:
                    continue
                document = _document(raw)
            key = document.public_key_for(signature.verification_method, "capabilityInvocation")
            _SIGNATURES.verify(key, message, signature.signature, decode_base58btc)
        except (BadSignature, ValueError, DidRegistryError, TxnRejected, TypeError, KeyError):
            sound = False
    return sound


def _quorum(view: StateView, name: str) -> int:
    network = view.get_json("network") or {}
    return int(network.get("rules", {}).get(name, 1))


def _require(view: StateView, signers: set[str], roles: frozenset[str], quorum: int, what: str) -> list[str]:
    holders = sorted(d for d in signers if roles & set(_roles(view, d)))
    if len(holders) < quorum:
        raise _reject(
            "forbidden",
            f"{what} needs {quorum} signature(s) by {'/'.join(sorted(roles))}, got {len(holders)}",
        )
    return holders


def _body_str(txn: Transaction, name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = txn.body.get(name)
    if not isinstance(value, str) or not value or (pattern is not None and not pattern.fullmatch(value)):
        raise _reject("malformed", f"body.{name} must be a valid string")
    return value


def _existing_did(view: StateView, did: str) -> dict[str, Any]:
    record = _record(view, did)
    if record is None:
        raise _reject("not_found", f"{did} is not on the ledger")
    if record["deactivated"]:
        raise _reject("conflict", f"{did} is deactivated")
    return record


class _ParsedDocuments:
    """Documents parsed from transaction bodies, by transaction id (the id is the hash of the body,
    so it names the document exactly). A transaction is executed several times on each node
    (admission, forwarding, proposal, validation); its document is parsed once."""

    def __init__(self, size: int, max_bytes: int) -> None:
        self._parsed: WeightedCache[bytes, DIDDocument] = WeightedCache(size, max_bytes)

    def get(self, txn: Transaction) -> DIDDocument:
        document = self._parsed.get(txn.id_bytes)
        if document is not None:
            return document
        try:
            document = DIDDocument.from_json(txn.body.get("document"))  # type: ignore[arg-type]
        except (DidRegistryError, TypeError, AttributeError) as exc:
            raise _reject("malformed", f"body.document: {exc}") from None
        self._parsed.put(txn.id_bytes, document, len(txn.canonical))
        return document

    def forget(self, txns: Iterable[Transaction]) -> None:
        for txn in txns:
            self._parsed.discard(txn.id_bytes)


_PARSED = _ParsedDocuments(20_000, 64 << 20)  # and at most 64 MiB of transactions' documents (a
# parsed document takes a few times its JSON): a sender chooses the size
_COMMITTED: BoundedCache[bytes, None] = BoundedCache(20_000)  # ids committed last: as many as a node's
# queue of checks ahead holds (node.preverify)


def forget(txns: Iterable[Transaction]) -> None:
    """``txns`` will not be executed again (refused at the door, or rejected): forget what
    :func:`preverify` remembered of them (their parsed documents). Kept, a refused ``did.create`` of
    a quarter of a megabyte held some 800 KB, and anyone may send one."""
    _PARSED.forget(txns)


def committed(txns: Sequence[Transaction]) -> None:
    """``txns`` are on the ledger: forget their parsed documents, and let :func:`preverify` pass them
    by (a transaction still queued for checking ahead when its block commits is not parsed again).

    A parsed document is some twenty Python objects, and each full garbage collection walks every
    object kept: holding the documents of blocks long committed (20,000 of them) made a validator's
    full collections take about 0.2 s each."""
    _PARSED.forget(txns)
    for txn in txns:
        _COMMITTED.put(txn.id_bytes, None)


def _new_document(txn: Transaction, did: str) -> DIDDocument:
    document = _PARSED.get(txn)
    if str(document.id) != did:
        raise _reject("malformed", f"body.document.id must be {did}")
    if not any(did_of(m) == did for m in document.relationship("capabilityInvocation")):
        raise _reject("malformed", "the document must keep a capabilityInvocation key of its own")
    return document


def _document_bytes(txn: Transaction) -> bytes | None:
    """The JCS bytes of ``body.document``, cut from the transaction's canonical form when the body
    holds nothing else (members in key order: ``{"body":{"document":…},"network":…}``); else None."""
    if len(txn.body) != 1 or "document" not in txn.body:
        return None
    head = b'{"body":{"document":'
    tail = b'},"network":%s,"nonce":%d,"submitter":%s,"type":%s}' % (
        canonicalize(txn.network),
        txn.nonce,
        canonicalize(txn.submitter),
        canonicalize(txn.type),
    )
    raw = txn.canonical
    if len(raw) <= len(head) + len(tail) or not raw.startswith(head) or not raw.endswith(tail):
        return None
    return raw[len(head) : -len(tail)]


def _encode_record(record: dict[str, Any], document: bytes | None) -> bytes:
    """The canonical bytes of a DID record; ``document``, when given, is the JCS of its document,
    put in place of the member (no string in JCS holds ``"document":null`` unescaped, so the one
    match is the member itself)."""
    if document is None:
        return encode_value(record)
    return encode_value({**record, "document": None}).replace(
        b'"document":null', b'"document":' + document, 1
    )


def _write_did(view: StateView, did: str, record: dict[str, Any], document: bytes | None = None) -> None:
    encoded = _encode_record(record, document)  # one canonicalization for both keys
    view.put(f"did:{did}", encoded)
    view.put(f"didv:{did}:{record['version']}", encoded)


# -- handlers ---------------------------------------------------------------------------------
def _did_create(view: StateView, txn: Transaction, ctx: BlockContext) -> None:
    did = txn.submitter
    try:
        if parse_trellis_did(did).network != ctx.network:
            raise _reject("malformed", f"{did} is not a DID of network {ctx.network}")
    except InvalidDID as exc:
        raise _reject("malformed", f"submitter: {exc}") from None
    if view.get(f"did:{did}") is not None:
        raise _reject("conflict", f"{did} already exists")
    document = _new_document(txn, did)
    signers = _verified_signers(view, txn, {did: document})
    own = next(s for s in txn.signatures if did_of(s.verification_method) == did)
    try:
        check_self_certifying(did, document.public_key_for(own.verification_method, "capabilityInvocation"))
    except DidRegistryError as exc:
        raise _reject("forbidden", f"not self-certifying: {exc}") from None
    endorsers = _require(view, signers - {did}, ENDORSER_ROLES, 1, "did.create")
    record = {
        "document": document.json_view(),  # encoded at once, never changed
        "version": 1,
        "created": ctx.time,
        "updated": ctx.time,
        "deactivated": False,
        "endorser": endorsers[0],
        "txn": txn.id,
        "height": ctx.height,
    }
    _write_did(view, did, record, _document_bytes(txn))  # the document as the transaction holds it


def _did_change(view: StateView, txn: Transaction, ctx: BlockContext) -> None:
    did = txn.submitter
    record = _existing_did(view, did)
    signers = _verified_signers(view, txn, {})
    allowed = {did, *DIDDocument.from_json(record["document"]).controllers}
    if not signers & allowed:
        raise _reject("forbidden", f"{txn.type} must be signed by {did} or its controller")
    record = dict(record, version=record["version"] + 1, updated=ctx.time, txn=txn.id, height=ctx.height)
    if txn.type == "did.update":
        record["document"] = _new_document(txn, did).to_json()
    else:
        if "trustee" in _roles(view, did) and not _active_trustees(view) - {did}:
            raise _reject("conflict", "refusing to deactivate the last active trustee")
        record["deactivated"] = True
        _forget(view, f"trust:{did}")  # a deactivated DID issues nothing any more: no accreditation
    _write_did(view, did, record)


def _forget(view: StateView, key: str) -> None:
    """Delete ``key`` if it is held (a change only when there is something to change)."""
    if view.get(key) is not None:
        view.delete(key)


def _active_trustees(view: StateView) -> set[str]:
    """The trustees whose DIDs are not deactivated: those who can still sign."""
    return {t for t in view.get_json("trustees") or [] if not (_record(view, t) or {}).get("deactivated")}


def _role_change(view: StateView, txn: Transaction, ctx: BlockContext) -> None:
    target, role = _body_str(txn, "did"), _body_str(txn, "role")
    if role not in GRANT_RULES:
        raise _reject("malformed", f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    if txn.type == "role.grant":
        _existing_did(view, target)
    elif _record(view, target) is None:  # a deactivated DID's roles can still be taken away
        raise _reject("not_found", f"{target} is not on the ledger")
    signers = _verified_signers(view, txn, {})
    _require(view, signers, GRANT_RULES[role], _quorum(view, f"{role}_quorum"), f"{txn.type} {role}")
    roles = _roles(view, target)
    if txn.type == "role.grant":
        if role in roles:
            raise _reject("conflict", f"{target} already holds {role}")
        roles.append(role)
    else:
        if role not in roles:
            raise _reject("conflict", f"{target} does not hold {role}")
        roles.remove(role)
    if role == "trustee":
        trustees = set(view.get_json("trustees") or [])
        trustees = trustees | {target} if txn.type == "role.grant" else trustees - {target}
        if txn.type == "role.revoke" and not _active_trustees(view) - {target}:
            raise _reject("conflict", "refusing to revoke the last active trustee")
        view.put("trustees", sorted(trustees))
    if role == "issuer" and txn.type == "role.revoke":
        _forget(view, f"trust:{target}")  # only holders of the issuer role are accredited
    if roles:
        view.put(f"role:{target}", sorted(roles))
    else:
        view.delete(f"role:{target}")


def _status_list_create(view: StateView, txn: Transaction, ctx: BlockContext) -> None:
    signers = _verified_signers(view, txn, {})
    _require(view, signers & {txn.submitter}, frozenset({"issuer"}), 1, "status_list.create")
    name, purpose = _body_str(txn, "list", _NAME), _body_str(txn, "purpose")
    length = txn.body.get("length", 131_072)
    if purpose not in ("revocation", "suspension"):
        raise _reject("malformed", "purpose must be revocation or suspension")
    if type(length) is not int or length % 8 or not 131_072 <= length <= MAX_STATUS_LENGTH:
        raise _reject("malformed", f"length must be a multiple of 8 from 131072 to {MAX_STATUS_LENGTH}")
    key = f"status:{txn.submitter}:{name}"
    if view.get(key) is not None:
        raise _reject("conflict", f"status list {name} of {txn.submitter} exists")
    bits = base64.urlsafe_b64encode(bytes(length // 8)).decode()
    view.put(key, _status_value(txn.submitter, name, purpose, length, bits, 1, ctx))


def _status_value(
    issuer: str, name: str, purpose: str, length: int, bits: str, version: int, ctx: BlockContext
) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "list": name,
        "purpose": purpose,
        "length": length,
        "bits": bits,
        "version": version,
        "updated": ctx.time,
        "height": ctx.height,
    }


def _indices(txn: Transaction, name: str) -> list[int]:
    value = txn.body.get(name, [])
    if not isinstance(value, list) or not all(type(i) is int for i in value):
        raise _reject("malformed", f"body.{name} must be an array of integers")
    return value


def _status_list_update(view: StateView, txn: Transaction, ctx: BlockContext) -> None:
    signers = _verified_signers(view, txn, {})
    _require(view, signers & {txn.submitter}, frozenset({"issuer"}), 1, "status_list.update")
    name = _body_str(txn, "list", _NAME)
    current = view.get_json(f"status:{txn.submitter}:{name}")
    if current is None:
        raise _reject("not_found", f"no status list {name} of {txn.submitter}")
    to_set, to_clear = _indices(txn, "set"), _indices(txn, "clear")
    if len(to_set) + len(to_clear) > MAX_STATUS_CHANGES:
        raise _reject("malformed", f"at most {MAX_STATUS_CHANGES} changes in one update")
    if to_clear and current["purpose"] == "revocation":
        raise _reject("forbidden", "revocation is final: bits of a revocation list cannot be cleared")
    bits = BitstringStatusList.from_bytes(base64.urlsafe_b64decode(current["bits"]))
    try:
        bits.set_many(to_set, 1)
        bits.set_many(to_clear, 0)
    except InvalidStatusList as exc:
        raise _reject("malformed", str(exc)) from None
    encoded = base64.urlsafe_b64encode(bits.to_bytes()).decode()
    value = _status_value(
        txn.submitter, name, current["purpose"], current["length"], encoded, current["version"] + 1, ctx
    )
    view.put(f"status:{txn.submitter}:{name}", value)


def _trust_change(view: StateView, txn: Transaction, ctx: BlockContext) -> None:
    issuer = _body_str(txn, "issuer")
    types = txn.body.get("types")
    if types is not None and (
        not isinstance(types, list)
        or not 0 < len(types) <= 64
        or not all(isinstance(t, str) and 0 < len(t) <= 128 for t in types)
    ):
        raise _reject("malformed", "body.types must be 1 to 64 credential type names")
    signers = _verified_signers(view, txn, {})
    _require(view, signers, frozenset({"trustee"}), _quorum(view, "trust_quorum"), txn.type)
    current = set(view.get_json(f"trust:{issuer}") or [])
    if txn.type == "trust.accredit":
        if types is None:
            raise _reject("malformed", "body.types is required")
        _existing_did(view, issuer)
        if "issuer" not in _roles(view, issuer):
            raise _reject("conflict", f"{issuer} does not hold the issuer role")
        current |= set(types)
    else:
        if not current:
            raise _reject("not_found", f"{issuer} is not accredited")
        current = set() if types is None else current - set(types)
    if current:
        view.put(f"trust:{issuer}", sorted(current))
    else:
        view.delete(f"trust:{issuer}")


def _quarantine_report(view: StateView, txn: Transaction, ctx: BlockContext) -> None:
    signers = _verified_signers(view, txn, {})
    _require(view, signers & {txn.submitter}, frozenset({"reporter"}), 1, "quarantine.report")
    device = _body_str(txn, "did")
    evidence = txn.body.get("evidence")
    if (
        not isinstance(evidence, Mapping)
        or set(evidence) != {"hash", "description"}
        or not isinstance(evidence["hash"], str)
        or not _HEX64.fullmatch(evidence["hash"])
        or not isinstance(evidence["description"], str)
        or not 0 < len(evidence["description"]) <= 2000
    ):
        raise _reject("malformed", "evidence is {hash: 64 lowercase hex, description: 1 to 2000 chars}")
    if _record(view, device) is None:
        raise _reject("not_found", f"{device} is not on the ledger")
    if view.get(f"quarantine:{device}") is not None:
        raise _reject("conflict", f"{device} is already quarantined")
    view.put(
        f"quarantine:{device}",
        {
            "did": device,
            "reporter": txn.submitter,
            "evidence": dict(evidence),
            "height": ctx.height,
            "time": ctx.time,
            "txn": txn.id,
        },
    )


def _quarantine_clear(view: StateView, txn: Transaction, ctx: BlockContext) -> None:
    device = _body_str(txn, "did")
    signers = _verified_signers(view, txn, {})
    if view.get(f"quarantine:{device}") is None:
        raise _reject("not_found", f"{device} is not quarantined")
    record = _record(view, device) or {}
    trustees = {d for d in signers if "trustee" in _roles(view, d)}
    endorser = record.get("endorser")
    endorsing = endorser in signers and bool(ENDORSER_ROLES & set(_roles(view, str(endorser))))
    if not trustees and not endorsing:
        raise _reject(
            "forbidden",
            "quarantine.clear needs a trustee, or the DID's endorser still holding an endorsing role",
        )
    view.delete(f"quarantine:{device}")


def _validator_change(view: StateView, txn: Transaction, ctx: BlockContext) -> None:
    signers = _verified_signers(view, txn, {})
    _require(view, signers, frozenset({"trustee"}), _quorum(view, "validator_quorum"), txn.type)
    height = txn.body.get("effective_height")
    if type(height) is not int or height <= ctx.height:
        raise _reject("malformed", f"effective_height must be an integer above {ctx.height}")
    change = {k: v for k, v in txn.body.items() if k != "effective_height"}
    action = txn.type.removeprefix("validator.")
    try:
        if "public_key" in change:
            decode_ed25519_public_key(change["public_key"])
        validator_set.schedule(view, action, change, height)
    except (validator_set.ValidatorSetError, DidRegistryError, TypeError) as exc:
        raise _reject(
            "malformed" if not isinstance(exc, validator_set.ValidatorSetError) else "conflict", str(exc)
        ) from None


_HANDLERS: Mapping[str, Callable[[StateView, Transaction, BlockContext], None]] = {
    "did.create": _did_create,
    "did.update": _did_change,
    "did.deactivate": _did_change,
    "role.grant": _role_change,
    "role.revoke": _role_change,
    "status_list.create": _status_list_create,
    "status_list.update": _status_list_update,
    "trust.accredit": _trust_change,
    "trust.withdraw": _trust_change,
    "quarantine.report": _quarantine_report,
    "quarantine.clear": _quarantine_clear,
    "validator.add": _validator_change,
    "validator.remove": _validator_change,
    "validator.rotate_key": _validator_change,
}


def execute(view: StateView, txn: Transaction, ctx: BlockContext) -> None:
    """Check ``txn`` against the rules and the state in ``view``; write its effects there.

    Raises :class:`TxnRejected` naming the failed rule; ``view`` must then be thrown away.
    """
    if txn.network != ctx.network:
        raise _reject("malformed", f"transaction is for network {txn.network!r}, this is {ctx.network!r}")
    last = view.get_json(f"nonce:{txn.submitter}") or 0
    if txn.nonce <= last:
        raise _reject("replay", f"nonce {txn.nonce} of {txn.submitter} is not above the last used, {last}")
    _HANDLERS[txn.type](view, txn, ctx)
    view.put(f"nonce:{txn.submitter}", txn.nonce)
