"""The portal's issuer identity: its keys, its DID on the ledger, and the setup that makes it an issuer.

An organisation is ready to enrol devices when every :class:`SetupStep` is done:

1. ``keystore``: its Ed25519 key in an encrypted keystore (:mod:`wallet.keystore`) in the portal's
   instance folder, never in plain text;
2. ``did``: its ``did:trellis`` on the ledger (``did.create``, endorsed by a trustee);
3. ``issuer_role``: the issuer role (``role.grant``, by trustees, ``rules.issuer_quorum``);
4. ``accreditation``: accredited in the trust registry for ``DeviceCredential`` (``trust.accredit``,
   by trustees, ``rules.trust_quorum``);
5. ``revocation_list`` and ``suspension_list``: its first pair of status lists on the ledger
   (``status_list.create``, by the organisation), named ``1-revocation`` and ``1-suspension``, as the
   :class:`~wallet.issuer.Issuer` names the lists it allocates indices from.

:meth:`Organisation.status` reads each fact with proofs; :meth:`Organisation.setup` performs the
missing steps as ledger transactions, signed by the trustees where the rules ask for them
(``docs/ledger.md``). The organisation's own transactions are numbered under a per-DID lock, so
several threads of one portal never reuse a nonce.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Final

from sqlalchemy.engine import Engine

from did_registry.client import LedgerClient, LedgerUnavailable
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, parse_trellis_did, trellis_did
from did_registry.ledger.txn import Transaction, TxnRejected
from wallet.issuer import DEFAULT_LIST_LENGTH, Issuer
from wallet.keystore import KDF_MODERATE, KdfParams, Keystore
from wallet.ledger_cli import next_nonce, signer_of

__all__ = [
    "KEYSTORE_FILE",
    "DEVICE_CREDENTIAL",
    "SetupStep",
    "TRUSTEE_STEPS",
    "SetupStatus",
    "Signer",
    "PortalError",
    "OrganisationError",
    "OrganisationNotReady",
    "TrusteeRequired",
    "LedgerRefused",
    "LedgerUnreachable",
    "Organisation",
    "committed",
    "list_name",
    "submit",
]

KEYSTORE_FILE: Final = "organisation.key"
"""The organisation's keystore, in the portal's instance folder."""
DEVICE_CREDENTIAL: Final = "DeviceCredential"
"""The credential type the organisation issues to devices."""


class SetupStep(StrEnum):
    """One thing an organisation needs before it can enrol devices."""

    KEYSTORE = "keystore"
    DID = "did"
    ISSUER_ROLE = "issuer_role"
    ACCREDITATION = "accreditation"
    REVOCATION_LIST = "revocation_list"
    SUSPENSION_LIST = "suspension_list"


TRUSTEE_STEPS: Final = frozenset({SetupStep.DID, SetupStep.ISSUER_ROLE, SetupStep.ACCREDITATION})
"""The steps that need trustee signatures."""


def list_name(purpose: str, number: int = 1) -> str:
    """The ledger name of the organisation's ``number``-th list for ``purpose`` (``1-revocation``)."""
    return f"{number}-{purpose}"


@dataclass(frozen=True, slots=True)
class SetupStatus:
    """What an organisation has and lacks, read from its keystore and the ledger at ``height``."""

    did: str | None
    missing: tuple[SetupStep, ...]
    height: int | None = None

    @property
    def complete(self) -> bool:
        """Whether every step is done."""
        return not self.missing

    @property
    def needs_trustee(self) -> bool:
        """Whether a missing step needs trustee signatures."""
        return any(step in TRUSTEE_STEPS for step in self.missing)


@dataclass(frozen=True, slots=True)
class Signer:
    """A did:trellis identity that signs ledger transactions: its DID, key and verification method."""

    did: str
    key: Ed25519PrivateKey
    method: str

    @classmethod
    def from_keystore(cls, keystore: Keystore) -> Signer:
        """The signer of a did:trellis keystore (its current key)."""
        return cls(*signer_of(keystore))


class PortalError(Exception):
    """Root of the portal services' errors; ``status`` and ``code`` are for an RFC 9457 answer.

    ::

        PortalError
        ├── OrganisationError
        │   ├── OrganisationNotReady
        │   └── TrusteeRequired
        ├── LedgerRefused
        ├── LedgerUnreachable
        └── EnrolmentError (web.enrolment)
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "portal_error"


class OrganisationError(PortalError):
    """The organisation cannot do what was asked."""

    status = 409
    code = "organisation"


class OrganisationNotReady(OrganisationError):
    """A setup step is missing; ``missing`` says which."""

    status = 503
    code = "not_set_up"

    def __init__(self, missing: Sequence[SetupStep]) -> None:
        self.missing = tuple(missing)
        super().__init__(f"the organisation is not set up: missing {', '.join(missing)}")


class TrusteeRequired(OrganisationError):
    """A missing step needs trustee signatures and no trustee key was given."""

    status = 400
    code = "trustee_required"


class LedgerRefused(PortalError):
    """The ledger refused a transaction; ``rejection`` carries its code and detail."""

    status = 502
    code = "ledger_refused"

    def __init__(self, what: str, rejection: TxnRejected) -> None:
        self.rejection = rejection
        super().__init__(f"the ledger refused {what}: {rejection}")


class LedgerUnreachable(PortalError):
    """No ledger node answered usefully, or a transaction was not committed in time."""

    status = 503
    code = "ledger_unavailable"


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


_USED: dict[str, int] = {}


def _nonce_lock(did: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(did, threading.Lock())


def _take_nonces(ledger: LedgerClient, did: str, count: int = 1) -> int:
    """The first of ``count`` fresh nonces of ``did`` (hold its :func:`_nonce_lock`).

    The ledger's record is proven but may come from a node that lags behind (one that was just
    restarted, say); this process's own last nonce keeps it from reusing one (nonces only need to
    grow: a gap left by a refused submission is harmless).
    """
    first = max(next_nonce(ledger, did), _USED.get(did, 0) + 1)
    _USED[did] = first + count - 1
    return first


def submit(
    ledger: LedgerClient, what: str, txns: Sequence[Transaction], timeout: float
) -> list[dict[str, Any]]:
    """Submit ``txns`` as one batch and wait for each to commit; their statuses (``id``, ``height`` …).

    A refusal raises :class:`LedgerRefused`; no answer, or no commit within ``timeout``,
    :class:`LedgerUnreachable`.
    """
    with _answers_of(what):
        return ledger.submit_and_wait(list(txns), timeout)


def committed(
    ledger: LedgerClient, what: str, txn_ids: Sequence[str], timeout: float
) -> list[dict[str, Any]]:
    """As :func:`submit`, for transactions the ledger holds already (a node answered ``replay``):
    wait for each to commit, proven, within ``timeout``."""
    with _answers_of(what):
        return ledger.wait_committed(list(txn_ids), timeout)


@contextmanager
def _answers_of(what: str) -> Iterator[None]:
    """The ledger's refusal of ``what`` as :class:`LedgerRefused`, no answer as :class:`LedgerUnreachable`."""
    try:
        yield
    except TxnRejected as exc:
        raise LedgerRefused(what, exc) from None
    except LedgerUnavailable as exc:
        raise LedgerUnreachable(f"{what}: {exc}") from None


class Organisation:
    """The portal's issuer: a key in an encrypted keystore and a DID with the issuer's standing."""

    def __init__(
        self,
        keystore_path: str | Path,
        passphrase: str,
        *,
        credential_types: Sequence[str] = (DEVICE_CREDENTIAL,),
        params: KdfParams = KDF_MODERATE,
        list_length: int = DEFAULT_LIST_LENGTH,
    ) -> None:
        self.keystore_path = Path(keystore_path)
        self._passphrase = passphrase
        self.credential_types = tuple(credential_types)
        self.params = params
        self.list_length = list_length
        self._signer: Signer | None = None
        self._lists_on_ledger: set[str] = set()

    @classmethod
    def in_instance(cls, instance_path: str | Path, passphrase: str, **options: Any) -> Organisation:
        """The organisation whose keystore is ``organisation.key`` in the portal's instance folder."""
        return cls(Path(instance_path) / KEYSTORE_FILE, passphrase, **options)

    # -- identity ---------------------------------------------------------------------------
    @property
    def has_keystore(self) -> bool:
        """Whether the keystore file exists."""
        return self.keystore_path.exists()

    @property
    def signer(self) -> Signer:
        """The organisation's DID, key and method (the keystore is opened once)."""
        if self._signer is None:
            if not self.has_keystore:
                raise OrganisationNotReady([SetupStep.KEYSTORE])
            self._signer = Signer.from_keystore(Keystore.open(self.keystore_path, self._passphrase))
        return self._signer

    @property
    def did(self) -> str | None:
        """The organisation's DID, or ``None`` before its keystore exists."""
        return self.signer.did if self.has_keystore else None

    def _create_keystore(self, network: str) -> Signer:
        key = Ed25519PrivateKey.generate()
        did = str(trellis_did(network, key.public_key))
        self.keystore_path.parent.mkdir(parents=True, exist_ok=True)
        Keystore.new(key, metadata={"did": did}, params=self.params).save(
            self.keystore_path, self._passphrase
        )
        self._signer = None
        return self.signer

    # -- status -----------------------------------------------------------------------------
    def status(self, ledger: LedgerClient) -> SetupStatus:
        """What is done and what is missing, read from the keystore and, with proofs, the ledger."""
        if not self.has_keystore:
            return SetupStatus(None, tuple(SetupStep))
        did = self.signer.did
        if parse_trellis_did(did).network != ledger.genesis.network:
            raise OrganisationError(
                f"the keystore holds {did}, not a DID of network {ledger.genesis.network}"
            )
        keys = [
            f"did:{did}",
            f"role:{did}",
            f"trust:{did}",
            f"status:{did}:{list_name('revocation')}",
            f"status:{did}:{list_name('suspension')}",
        ]
        (record, roles, trust, revocation, suspension), header = ledger.prove_many(keys)
        missing: list[SetupStep] = []
        if record is None or record.get("deactivated"):
            missing.append(SetupStep.DID)
        if "issuer" not in (roles or []):
            missing.append(SetupStep.ISSUER_ROLE)
        if not set(self.credential_types) <= set(trust or []):
            missing.append(SetupStep.ACCREDITATION)
        if revocation is None:
            missing.append(SetupStep.REVOCATION_LIST)
        if suspension is None:
            missing.append(SetupStep.SUSPENSION_LIST)
        return SetupStatus(did, tuple(missing), header.height)

    # -- setup ------------------------------------------------------------------------------
    def setup(
        self,
        ledger: LedgerClient,
        trustees: Keystore | Signer | Sequence[Keystore | Signer] = (),
        *,
        timeout: float = 60.0,
    ) -> SetupStatus:
        """Do every missing step through ledger transactions; return the status afterwards.

        ``trustees`` sign where the rules ask for trustees: the first one endorses the DID and submits
        the role grant and the accreditation; the others co-sign (for quorums above one).
        """
        given = [trustees] if isinstance(trustees, Keystore | Signer) else list(trustees)
        signers = [t if isinstance(t, Signer) else Signer.from_keystore(t) for t in given]
        status = self.status(ledger)
        if status.needs_trustee and not signers:
            steps = [s for s in status.missing if s in TRUSTEE_STEPS]
            raise TrusteeRequired(f"{', '.join(steps)} need(s) a trustee's signature")
        missing = set(status.missing)
        me = self._create_keystore(ledger.genesis.network) if SetupStep.KEYSTORE in missing else self.signer
        network = ledger.genesis.network
        if SetupStep.DID in missing:
            document = initial_document(me.did, me.key.public_key).to_json()
            txn = Transaction.build(
                "did.create", network=network, submitter=me.did, nonce=1, body={"document": document}
            ).signed(me.key, me.method)
            submit(ledger, "the organisation's DID", [_cosigned(txn, signers)], timeout)
        if SetupStep.ISSUER_ROLE in missing:
            self._by_trustees(ledger, signers, "role.grant", {"did": me.did, "role": "issuer"}, timeout)
        if SetupStep.ACCREDITATION in missing:
            body = {"issuer": me.did, "types": list(self.credential_types)}
            self._by_trustees(ledger, signers, "trust.accredit", body, timeout)
        lists = [
            list_name(purpose)
            for step, purpose in (
                (SetupStep.REVOCATION_LIST, "revocation"),
                (SetupStep.SUSPENSION_LIST, "suspension"),
            )
            if step in missing
        ]
        self.create_status_lists(ledger, lists, timeout=timeout)
        return self.status(ledger)

    def _by_trustees(
        self,
        ledger: LedgerClient,
        trustees: Sequence[Signer],
        txn_type: str,
        body: Mapping[str, Any],
        timeout: float,
    ) -> None:
        first = trustees[0]
        with _nonce_lock(first.did):
            txn = Transaction.build(
                txn_type,
                network=ledger.genesis.network,
                submitter=first.did,
                nonce=_take_nonces(ledger, first.did),
                body=body,
            )
            submit(ledger, txn_type, [_cosigned(txn.signed(first.key, first.method), trustees[1:])], timeout)

    # -- the organisation's own transactions ------------------------------------------------
    def transact(
        self, ledger: LedgerClient, items: Sequence[tuple[str, Mapping[str, Any]]], *, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Submit transactions ``(type, body)`` signed by the organisation, as one batch, and wait;
        their committed statuses (``id``, ``height`` …), in order."""
        if not items:
            return []
        me = self.signer
        with _nonce_lock(me.did):
            first = _take_nonces(ledger, me.did, len(items))
            txns = [
                Transaction.build(
                    txn_type, network=ledger.genesis.network, submitter=me.did, nonce=first + n, body=body
                ).signed(me.key, me.method)
                for n, (txn_type, body) in enumerate(items)
            ]
            return submit(ledger, ", ".join(sorted({t for t, _ in items})), txns, timeout)

    def create_status_lists(
        self, ledger: LedgerClient, names: Iterable[str], *, timeout: float = 60.0
    ) -> None:
        """Create the organisation's lists ``names`` (``<n>-revocation`` / ``<n>-suspension``)."""
        items = []
        for name in names:
            purpose = name.rpartition("-")[2]
            if purpose not in ("revocation", "suspension"):
                raise OrganisationError(f"status list {name!r} does not end in -revocation or -suspension")
            body = {"list": name, "purpose": purpose, "length": self.list_length}
            items.append(("status_list.create", body))
        self.transact(ledger, items, timeout=timeout)
        self._lists_on_ledger.update(str(body["list"]) for _, body in items)

    def ensure_status_lists(
        self, ledger: LedgerClient, names: Iterable[str], *, timeout: float = 60.0
    ) -> None:
        """Create those of the lists ``names`` that are not on the ledger yet (an issuer's next pair)."""
        wanted = sorted(set(names) - self._lists_on_ledger)
        if not wanted:
            return
        did = self.signer.did
        values, _ = ledger.prove_many([f"status:{did}:{name}" for name in wanted])
        self._lists_on_ledger.update(name for name, value in zip(wanted, values, strict=True) if value)
        self.create_status_lists(
            ledger, [n for n, v in zip(wanted, values, strict=True) if v is None], timeout=timeout
        )

    # -- issuing ----------------------------------------------------------------------------
    def issuer(self, engine: Engine, node_url: str) -> Issuer:
        """The :class:`~wallet.issuer.Issuer` for this organisation, its lists published by the ledger.

        Its status list URLs are ``<node_url>/status-lists/<did>/<n>-<purpose>``, the ledger's own
        path for the lists, which any node serves and verifiers read as proven state.
        """
        me = self.signer
        return Issuer(
            did=me.did,
            key=me.key,
            verification_method=me.method,
            engine=engine,
            status_base_url=f"{node_url.rstrip('/')}/status-lists/{me.did}",
            list_length=self.list_length,
        )


def _cosigned(txn: Transaction, signers: Sequence[Signer]) -> Transaction:
    for signer in signers:
        txn = txn.signed(signer.key, signer.method)
    return txn
