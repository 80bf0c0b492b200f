"""The :class:`Verifier`: authenticate devices against the DID documents and registries of trusted ledgers.

A device proves itself by answering a challenge with a presentation of its credential
(:meth:`Verifier.authenticate_presentation`) or by signing HTTP requests (RFC 9421,
:meth:`Verifier.authenticate_request`). Either way the verifier checks the key against the
device's current on-chain DID document and the credential against the trust registry, the
issuer's status lists and the quarantine list, all read with proofs through a per-network
:class:`~verifier.ledger_cache.LedgerCache`. Each refusal is a :class:`~verifier.errors.Refused`
whose ``reason`` names the failed check.

DID methods: ``did:trellis`` of a trusted network (chosen by the DID's network segment), and
``did:key`` resolved locally. Other methods plug in with ``resolvers={"web": my_resolver}``: any
:class:`~did_registry.identity.resolution.Resolver`; such devices cannot be quarantined (the
quarantine list holds ledger DIDs), and their documents are resolved on every authentication.

Sessions opened are followed (and ended when their devices' ledger records change) by
:mod:`verifier.session_following`, whose public names are importable from here too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from did_registry.client import LedgerClient
from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.resolution import Resolver
from verifier import _fast, _signed
from verifier._admissions import Admissions
from verifier._checks import AuthenticatedDevice, CredentialSummary, proof_refusal
from verifier._ledger_view import LedgerView
from verifier._records import AUTHENTICATION, DIDEntry
from verifier._report import ReportNonces
from verifier.challenge import issue_challenge, redeem_challenge
from verifier.errors import ConfigurationError, Reason, Refused
from verifier.ledger_cache import ClientSource, LedgerCache
from verifier.policy import NetworkTrust, Policy
from verifier.replay import MemoryNonceStore, NonceStore
from verifier.session_following import SESSIONS_PER_DEVICE, WATCHED_DEVICES_MAX, SessionFollowing, _Opened
from verifier.sessions import SessionStore, open_session
from wallet.credential import check_context, did_of
from wallet.errors import InvalidSharedSecret, VerificationFailed
from wallet.http_signatures import HttpRequest
from wallet.proofs.eddsa_jcs_2022 import verify_proof

__all__ = [
    "SESSIONS_PER_DEVICE",
    "WATCHED_DEVICES_MAX",
    "AuthenticatedDevice",
    "CredentialSummary",
    "Verifier",
]


class Verifier(SessionFollowing):
    """Authenticates devices (see the module docstring).

    ``nonces`` holds issued challenges and used signature nonces (in memory by default; use a
    :class:`~verifier.replay.RedisNonceStore` to share them between processes); both stores bound
    the challenges apart (``max_challenges``), so that a flood of them cannot crowd out the signature
    nonces. ``sessions``
    enables sessions. ``clock`` gives Unix seconds. ``follow`` starts one background thread per
    network that follows its certified header stream; call :meth:`close` to stop them.

    A session store that cannot take a session (a full :class:`~verifier.MemorySessionStore`, an
    unreachable Redis) does not refuse the device: it is let in without a session offer, and
    authenticates fully on its next request; ``session_errors`` keeps the last 100 such failures.
    Each device holds at most :data:`SESSIONS_PER_DEVICE` sessions opened by this process, and the
    process follows (to end them on ledger changes) the sessions of at most
    :data:`WATCHED_DEVICES_MAX` devices; a device is forgotten once its sessions expire (on the next
    block, or a little at a time as sessions open) or are ended.
    """

    def __init__(
        self,
        networks: Sequence[NetworkTrust],
        policy: Policy | None = None,
        *,
        nonces: NonceStore | None = None,
        sessions: SessionStore | None = None,
        resolvers: Mapping[str, Resolver] | None = None,
        clock: Callable[[], float] = time.time,
        follow: bool = True,
    ) -> None:
        self.policy = policy or Policy()
        if not isinstance(self.policy, Policy):
            raise ConfigurationError("policy must be a verifier.Policy")
        self.nonces: NonceStore = nonces if nonces is not None else MemoryNonceStore(clock=clock)
        self.sessions = sessions
        self.clock = clock
        self.networks = {n.network: n for n in networks}
        if len(self.networks) != len(networks):
            raise ConfigurationError("networks: a network is listed twice")
        self._watch_lock = threading.Lock()
        # devices by the status entries (issuer, list) -> index -> DIDs of the live sessions below
        self._watched: dict[tuple[str, str], dict[int, set[str]]] = {}
        # the live sessions this process opened: DID -> session id -> (expiry, status entries)
        self._sessions_of: dict[str, dict[str, _Opened]] = {}
        # (expiry, DID) for each session opened (or one per DID, the latest, after a compaction)
        self._expiring: list[tuple[float, str]] = []
        self._report_nonces = ReportNonces()
        self.session_errors: list[str] = []
        """Why sessions could not be opened or ended (a store full or unreachable), the last 100."""
        self._clients: list[LedgerClient] = []
        self.caches: dict[str, LedgerCache] = {trust.network: self._cache_for(trust) for trust in networks}
        self.ledger = LedgerView(self.caches, self.policy, resolvers)
        """What the verifier reads: DID entries, issuers, status lists (fresh enough, or refused)."""
        self._admissions = Admissions(self.ledger, self.policy)
        if follow:
            for cache in self.caches.values():
                cache.start()

    def _cache_for(self, trust: NetworkTrust) -> LedgerCache:
        if not trust.nodes:
            cache = LedgerCache(
                trust.network, None, clock=self.clock, max_block_age=self.policy.max_block_age
            )
        else:
            # one trust in the validator sets for the three: a change one learns (or a set trusted out
            # of band) holds for all, so none goes on trusting a set another has seen replaced
            nodes, transport = list(trust.nodes), trust.transport
            client = LedgerClient(nodes, trust.genesis, transport=transport)
            follower = LedgerClient(nodes, trust.genesis, transport=transport, timeout=30, trust=client.trust)
            watcher = LedgerClient(nodes, trust.genesis, transport=transport, timeout=2, trust=client.trust)
            self._clients.append(client)
            cache = LedgerCache(
                trust.network,
                ClientSource(client),
                clock=self.clock,
                client=client,
                follower=follower,
                watcher=watcher,
                poll_interval=self.policy.head_poll_interval,
                max_block_age=self.policy.max_block_age,
            )
        cache.listeners.append(self._on_changes)
        return cache

    def _attach(self, cache: LedgerCache) -> None:
        """Trust one more network through a ready cache (how :mod:`verifier.testing` plugs in)."""
        if cache.network in self.caches:
            raise ConfigurationError(f"network {cache.network!r} is already trusted")
        cache.listeners.append(self._on_changes)
        self.caches[cache.network] = cache

    def close(self) -> None:
        """Stop following the networks and close their connections."""
        for cache in self.caches.values():
            cache.stop()
        for client in self._clients:
            client.close()

    def __enter__(self) -> Verifier:
        """Use the verifier in a ``with`` block; it is closed at the end."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the verifier."""
        self.close()

    # -- the ledger view --------------------------------------------------------------------
    def staleness(self) -> float:
        """Seconds since the stalest trusted network's head was last confirmed."""
        return self.ledger.staleness()

    # -- challenge and response -------------------------------------------------------------
    def _now(self) -> tuple[float, datetime]:
        now = self.clock()
        return now, datetime.fromtimestamp(now, UTC)

    def challenge(self, audience: str) -> dict[str, Any]:
        """A fresh single-use challenge ``{"nonce", "audience", "expires"}`` for a device to answer.

        Challenges are bounded apart in the nonce store (``max_challenges``): when that many are
        outstanding this raises :class:`~verifier.replay.ChallengeLimitReached`, a
        :class:`~verifier.errors.StoreUnavailable` to answer 503 with ``Retry-After: retry_after``;
        signed requests are not affected."""
        issued = issue_challenge(
            self.nonces,
            audience,
            now=self.clock(),
            ttl=self.policy.challenge_ttl,
            grace=self.policy.challenge_ttl + self.policy.clock_skew,
        )
        return issued.to_json()

    def authenticate_presentation(self, presentation: Any, audience: str) -> AuthenticatedDevice:
        """Check a presentation answering one of this verifier's challenges for ``audience``."""
        try:
            return self._authenticate_presentation(presentation, audience)
        except Refused:
            raise
        except (VerificationFailed, DidRegistryError, ValueError, TypeError, KeyError, RecursionError) as exc:
            raise Refused(Reason.MALFORMED, f"presentation: {exc}") from None

    def _authenticate_presentation(self, presentation: Any, audience: str) -> AuthenticatedDevice:
        if not isinstance(presentation, Mapping) or not isinstance(presentation.get("proof"), Mapping):
            raise Refused(Reason.MALFORMED, "a presentation is a JSON object with a proof")
        now, when = self._now()
        proof = presentation["proof"]
        redeem_challenge(self.nonces, proof.get("challenge"), audience, now=now)
        check_context(presentation)
        types = presentation.get("type")
        types = [types] if isinstance(types, str) else types
        if not isinstance(types, list) or "VerifiablePresentation" not in types:
            raise Refused(Reason.MALFORMED, "type must include 'VerifiablePresentation'")
        method = proof.get("verificationMethod")
        if not isinstance(method, str):
            raise Refused(Reason.MALFORMED, "proof.verificationMethod must be a DID URL")
        holder = presentation.get("holder", did_of(method))
        if isinstance(holder, Mapping):
            holder = holder.get("id")
        if not isinstance(holder, str):
            raise Refused(Reason.MALFORMED, "holder must be a DID")
        entry = self.ledger.device_entry(holder, method)
        try:
            verified = verify_proof(
                presentation,
                _signed.authentication_lookup(holder, entry),
                expected_purpose="authentication",
                now=when,
                challenge=proof.get("challenge"),
                domain=audience,
            )
        except VerificationFailed as exc:
            raise proof_refusal(exc, holder) from None
        try:  # from here on the holder has proven who it is
            embedded = presentation.get("verifiableCredential", [])
            embedded = [embedded] if isinstance(embedded, Mapping) else embedded
            if not isinstance(embedded, list):
                raise Refused(Reason.MALFORMED, "verifiableCredential must be an array", did=holder)
            return self._admit(holder, entry, verified.verification_method, embedded, audience, now)
        except Refused as refused:
            _signed.proven(refused, holder)
            raise

    def _admit(
        self,
        did: str,
        entry: DIDEntry,
        key_id: str,
        credentials: Sequence[object],
        audience: str,
        now: float,
        *,
        remember: bool = False,
    ) -> AuthenticatedDevice:
        admitted = self._admissions.check(credentials, did, now, remember=remember)
        if not self.ledger.entry_stands(did, entry):  # a block touched the device while it was checked
            entry = self._still_authorised(did, entry, key_id)
        summary, height = admitted.summary, max(admitted.height, entry.height)
        offer: dict[str, str] | None = None
        agreement = None if self.sessions is None else entry.agreement_key()
        if self.sessions is not None and agreement is not None:
            try:
                session, opened = open_session(
                    did=did,
                    key_id=key_id,
                    audience=audience,
                    device_key_agreement=agreement,
                    ttl=self.policy.session_ttl,
                    now=now,
                    credential_id=summary.id,
                    height=height,
                    status=summary.status,
                    not_after=admitted.not_after,  # a session never outlives its credential
                    proof_method=admitted.key[0],
                    proof_key=admitted.key[1],
                    accredited_for=admitted.accepted,
                )
            except InvalidSharedSecret:  # a low-order keyAgreement key: no session can be keyed with it
                session = None
            # no session either when the credential is in its last second
            if session is not None and session.expires_at > now and self._keep(session):
                self._watch(did, summary, session.id, session.expires_at)
                offer = opened
        return AuthenticatedDevice(did, key_id, summary, height, offer)

    def _still_authorised(self, did: str, entry: DIDEntry, key_id: str) -> DIDEntry:
        """``did``'s entry as it stands now, refused as the device's checks would refuse it (deactivated,
        quarantined) or when ``key_id`` no longer names, for authentication, the key ``entry`` gave:
        a request already under way when a block disabled its device is not let in as of that block."""
        current = self.ledger.device_entry(did)
        fragment = key_id.partition("#")[2]
        if current.key(fragment, AUTHENTICATION) != entry.key(fragment, AUTHENTICATION):
            raise Refused(
                Reason.KEY_NOT_AUTHORIZED,
                f"{key_id} stopped authenticating {did} while it was checked",
                did=did,
            )
        return current

    # -- signed requests --------------------------------------------------------------------
    def authenticate_request(
        self,
        request: HttpRequest,
        audience: str | None = None,
        *,
        credential: Mapping[str, Any] | None = None,
    ) -> AuthenticatedDevice:
        """Check an RFC 9421 signed request (``ed25519`` by a device key, or ``hmac-sha256`` in a session).

        The device's credential comes in the ``Device-Credential`` header (base64url of its JSON)
        unless given as ``credential``. ``audience``, when given, must be the request's authority
        (``host[:port]``) or origin (``scheme://host[:port]``).
        """
        try:
            return _fast.authenticate_request(self, request, audience, credential)
        except Refused:
            raise
        except (VerificationFailed, DidRegistryError, ValueError, TypeError, KeyError, RecursionError) as exc:
            raise Refused(Reason.MALFORMED, f"request: {exc}") from None

    def _admit_now(
        self,
        did: str,
        entry: DIDEntry,
        key_id: str,
        credentials: Sequence[object],
        audience: str,
        *,
        remember: bool = False,
    ) -> AuthenticatedDevice:
        """Run the credential checks for an authenticated device and open a session (if enabled);
        ``remember`` the decision for credentials decoded from the ``Device-Credential`` header."""
        return self._admit(did, entry, key_id, credentials, audience, self.clock(), remember=remember)

    # -- gateways ---------------------------------------------------------------------------
    def authenticate_many(
        self, items: Sequence[tuple[Any, str] | HttpRequest], *, audience: str | None = None
    ) -> list[AuthenticatedDevice | Refused]:
        """Authenticate a batch: ``(presentation, audience)`` pairs, ``(request, audience)`` pairs and
        signed requests, each checked against ``audience`` (as :meth:`authenticate_request` does: a
        request signed for another service is refused ``wrong_audience``).

        Every DID of the batch (devices and issuers) is read in one proven round trip per network
        first; then each item is checked on its own, and refused items yield their :class:`Refused`.
        """
        self.ledger.prefetch(_signed.dids_in(items))
        results: list[AuthenticatedDevice | Refused] = []
        for item in items:
            try:
                if isinstance(item, HttpRequest):
                    results.append(self.authenticate_request(item, audience))
                elif isinstance(item, tuple) and item and isinstance(item[0], HttpRequest):
                    request, for_audience = item
                    results.append(self.authenticate_request(request, for_audience))
                else:
                    presentation, for_audience = item
                    results.append(self.authenticate_presentation(presentation, for_audience))
            except Refused as refused:
                results.append(refused)
        return results

    def prefetch(self, dids: Sequence[str]) -> None:
        """Read the ledger entries of ``dids`` not yet cached, one proven round trip per network."""
        self.ledger.prefetch(dids)

    # -- reporting and snapshots ------------------------------------------------------------
    def report(
        self,
        did: str,
        evidence: bytes | Mapping[str, Any],
        reporter_key: Ed25519PrivateKey,
        reporter_did: str,
        *,
        description: str | None = None,
        verification_method: str | None = None,
        timeout: float = 30.0,
    ) -> str:
        """File a ``quarantine.report`` of ``did`` signed by the service's reporter key; return the txn id."""
        from verifier._report import report

        return report(
            self, did, evidence, reporter_key, reporter_did, description, verification_method, timeout
        )

    def client(self, network: str) -> LedgerClient:
        """The ledger client of a trusted network (raises :class:`ConfigurationError` offline)."""
        cache = self.caches.get(network)
        if cache is None or cache.client is None:
            raise ConfigurationError(f"network {network!r} has no nodes to talk to")
        return cache.client

    def save_snapshot(self, path: str | Path) -> None:
        """Write a certified snapshot of everything cached (see :mod:`verifier.snapshot`)."""
        from verifier.snapshot import save_snapshot

        save_snapshot(self, path)

    @classmethod
    def from_snapshot(
        cls, path: str | Path, networks: Sequence[NetworkTrust], policy: Policy | None = None, **options: Any
    ) -> Verifier:
        """A verifier whose caches start from a snapshot checked against ``networks``' trust anchors.

        ``options`` are the constructor's; networks without nodes run offline from the snapshot.
        """
        from verifier.snapshot import load_snapshot

        return load_snapshot(cls, path, networks, policy=policy, **options)
