"""``LedgerClient``: talk to ledger nodes and trust none of them.

Every answer the client returns is checked: state values come with a sparse-Merkle proof against a
block header, and the header with a commit certificate from a quorum of the validator set the client
trusts at its height (the genesis validators, from the network's ``genesis.json``, and the sets they
handed over to). A node that lies about a
value, a path, a header or a signature is caught (:class:`~did_registry.errors.InvalidProof`) and
the client moves on to the next node it knows. Submissions go to any node; the client waits for
commitment by polling transaction status.

Reads never go back: the client remembers the highest certified block it has seen, and an answer
as of an older block (a node lagging, restarting or replaying, or one answering with the genesis
state) is passed over for another node's, waiting up to ``behind_wait`` for one to catch up. A node
is trusted for nothing unproven: a transaction reported committed is checked for inclusion in a
certified block before :meth:`LedgerClient.submit_and_wait` says so.

Validator-set changes are followed through the chain (:mod:`did_registry.validator_trust`): a
header naming a set the client does not trust at its height makes it ask the nodes for the changes
since the newest it knows (``GET /validators/changes``), each proven against a header certified by
the set before it. A set no node proves is refused with :class:`UntrustedValidatorSet` (after a
round of questions that learned nothing, none is asked for :data:`RELEARN_INTERVAL`);
:meth:`LedgerClient.trust_validators` adds a set
learned out of band, trusted at every height.
"""

from __future__ import annotations

import gc
import json
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from did_registry.bounded_http import BOUNDS, BoundedTransport, bounded_lines
from did_registry.errors import DidRegistryError, InvalidDID, InvalidProof
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_trellis import parse_trellis_did
from did_registry.identity.jcs import canonicalize
from did_registry.identity.resolution import (
    INVALID_DID,
    INVALID_OPTIONS,
    METHOD_NOT_SUPPORTED,
    NOT_FOUND,
    DocumentMetadata,
    ResolutionOptions,
    ResolutionResult,
)
from did_registry.identity.timestamps import parse_timestamp
from did_registry.ledger import merkle
from did_registry.ledger.block import BlockHeader, CommitCertificate, InvalidCertificate
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.proofs import StateProof
from did_registry.ledger.smt import MapProof
from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.ledger.validators import ValidatorSet
from did_registry.validator_trust import ValidatorTrust, genesis_root

__all__ = [
    "ANSWER_ERRORS",
    "FAILURES_KEPT",
    "MAX_EVENT_BYTES",
    "RELEARN_INTERVAL",
    "LedgerClient",
    "LedgerUnavailable",
    "RefusedByEveryNode",
    "TrellisResolver",
    "UntrustedValidatorSet",
]


class LedgerUnavailable(DidRegistryError):
    """No node gave a usable answer (all unreachable, failing, or caught lying)."""


class RefusedByEveryNode(TxnRejected):
    """Every node asked refused the submission with a 4xx answer (none failed, timed out or was
    overloaded): no node said it took the transactions. ``code``, ``detail`` and ``txn_id`` are the
    first refusal's, ``codes`` every node's, in order. (A node's word proves nothing: a hostile node
    may still hold them, and one node's ``replay`` means it holds them already.)"""

    def __init__(
        self, code: str, detail: str, *, txn_id: str | None = None, codes: Sequence[str] = ()
    ) -> None:
        super().__init__(code, detail, txn_id=txn_id)
        self.codes = tuple(codes) or (code,)


class UntrustedValidatorSet(InvalidProof):
    """A header is certified by a validator set this client has not been given to trust."""


_T = TypeVar("_T")
_STATUS_CHUNK = 1000  # transaction ids per POST /txns/status
_VERSION_ID = re.compile(r"[1-9][0-9]{0,17}")  # a versionId option: a DID's version, as the nodes take it
_STREAM_READ_TIMEOUT = 30.0  # a header stream silent this long (no heartbeat either) is given up
MAX_EVENT_BYTES = 1 << 20
"""The longest line of a node's header stream a reader takes (an event is a header and its
certificate: a few kilobytes)."""
_STALL_CHECK = 15.0  # a stream with no new header this long is compared with the other nodes' heads
FAILURES_KEPT = 1000
"""How many of the latest failures (node and what went wrong) a client keeps in ``failures``."""
RELEARN_INTERVAL = 1.0
"""Seconds after a round of questions about validator set changes that learned nothing before the
client asks again (a node showing headers of sets nobody proves costs one round a second, whatever
sets it names, not a round per answer)."""
_CHANGE_PAGES = 100  # pages of validator set changes asked of one node in one go (100 changes each)
_CHANGES_TIMEOUT = 2.0  # seconds one node has to answer GET /validators/changes, whole
_CHANGES_MAX_BYTES = 16 * 1024 * 1024  # the most one such answer may hold
ANSWER_ERRORS = (httpx.HTTPError, ValueError, KeyError, TypeError, RecursionError, InvalidProof)
"""What a node's answer may raise when read and checked: that node failed (JSON nested too deeply
raises RecursionError), the next one is asked."""


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch of answers is decoded.

    Decoding a thousand proven DID records allocates hundreds of thousands of acyclic objects, which
    makes CPython run full collections over the whole heap again and again (measured: 3x the cost of
    the decoding itself). Reference counting still frees everything; only cycle detection waits.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class LedgerClient:
    """A client for one Trellis network, given its genesis (the trust anchor) and node URLs."""

    def __init__(
        self,
        nodes: Sequence[str] | str,
        genesis: Genesis | Mapping[str, Any],
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        behind_wait: float = 2.0,
        trust: ValidatorTrust | None = None,
    ) -> None:
        """``behind_wait``: how long a read that needs a height (``min_height``) waits for a node that
        answers, but is behind it, to reach it; nodes commit a block moments apart, and one that has
        it may just have gone down. (The round of requests under way when it runs out is finished:
        each node may still take up to ``timeout``.) ``trust``: the validator sets to trust, shared
        with other clients of the network (what one learns, all trust); a new one from the genesis
        by default."""
        self.genesis = genesis if isinstance(genesis, Genesis) else Genesis.from_json(genesis)
        self.nodes = [nodes] if isinstance(nodes, str) else list(nodes)
        if not self.nodes:
            raise ValueError("a LedgerClient needs at least one node URL")
        if (
            isinstance(behind_wait, bool)
            or not isinstance(behind_wait, (int, float))
            or not 0 <= behind_wait < math.inf
        ):
            raise ValueError(f"behind_wait must be a finite number of seconds, not {behind_wait!r}")
        # Each exchange with a node ends within ``timeout`` and holds at most MAX_ANSWER_BYTES (one
        # node must not hold a reader or fill its memory); proxies from the environment would bypass
        # these bounds, so nodes are reached directly.
        self._http = httpx.Client(timeout=timeout, transport=BoundedTransport(transport), trust_env=False)
        self._genesis_root = genesis_root(self.genesis)
        if trust is not None and (trust.network, trust.genesis_root) != (
            self.genesis.network,
            self._genesis_root,
        ):
            raise ValueError(
                f"a trust in network {trust.network!r} from another genesis than this client's "
                f"({self.genesis.network!r}): a name is not a chain"
            )
        self._trust = ValidatorTrust(self.genesis, self._genesis_root) if trust is None else trust
        self._certified: OrderedDict[bytes, None] = OrderedDict()  # headers whose certificate checked out
        self._seen = 0  # the highest certified height any answer showed: reads never go back before it
        # what went wrong with which node, newest last
        self.failures: deque[str] = deque(maxlen=FAILURES_KEPT)
        self.behind_wait = behind_wait

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> LedgerClient:
        """Use the client in a ``with`` block; it closes its connections at the end."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the HTTP connections."""
        self.close()

    def trust_validators(self, validators: ValidatorSet) -> None:
        """Trust another validator set (learned out of band) for certificates, at every height (every
        client sharing this client's trust trusts it too)."""
        self._trust.trust_out_of_band(validators)

    @property
    def trust(self) -> ValidatorTrust:
        """The validator sets this client trusts (pass it to another client of the network to share)."""
        return self._trust

    def validator_changes(self) -> list[dict[str, Any]]:
        """The proven validator set changes this client has learned, oldest first (the answer format of
        ``GET /validators/changes``), for a reader that must start without asking a node (a snapshot)."""
        return self._trust.changes()

    def learn_validator_changes(self, changes: Any) -> int:
        """Check and trust proven validator set changes (:meth:`validator_changes` of another client of
        this network); return how many were new. Raise :class:`InvalidProof` at the first that does not
        check out (the ones before it are kept)."""
        return self._trust.learn(ValidatorTrust.parse(changes))

    # -- plumbing ---------------------------------------------------------------------------
    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[str, httpx.Response]:
        return self._request("GET", path, params=params)

    def _request(self, method: str, path: str, **options: Any) -> tuple[str, httpx.Response]:
        """The first answer below 500 from the nodes in turn; raise :class:`LedgerUnavailable`."""
        errors: list[str] = []
        for node in self.nodes:
            try:
                response = self._http.request(method, node.rstrip("/") + path, **options)
            except httpx.HTTPError as exc:
                errors.append(f"{node}: {exc}")
                continue
            if response.status_code >= 500:
                errors.append(f"{node}: HTTP {response.status_code}")
                continue
            return node, response
        self.failures.extend(errors)
        raise LedgerUnavailable("; ".join(errors) or "no node answered")

    def _validators_for(self, header: BlockHeader) -> ValidatorSet:
        """The set that certifies ``header``: the one this client trusts at its height, learning the
        changes since the newest it knows when the header names another."""
        wanted = header.validators_hash
        validators, trusted = self._trust.at(header.height)
        if wanted == trusted:
            return validators
        out_of_band = self._trust.out_of_band(wanted)
        if out_of_band is not None:
            return out_of_band
        if header.height > self._trust.newest_change and self._learn_changes(wanted, header.height):
            return self._trust.at(header.height)[0]
        raise UntrustedValidatorSet(
            "certificate",
            f"block {header.height} names validator set {wanted[:16]}…, not the one trusted there "
            f"({trusted[:16]}…), and no node proved a change to it",
        )

    def _learn_changes(self, wanted: str, height: int) -> bool:
        """Ask the nodes in turn for the validator set changes since the newest this client knows, until
        the set trusted at ``height`` is ``wanted``; whether it is. One round runs at a time among the
        clients sharing this trust: a thread that waited for another's round takes its outcome rather
        than asking again (and waits at most as long as a round may take), and after a round that
        learned nothing, none runs for :data:`RELEARN_INTERVAL`."""
        rounds = self._trust.rounds
        seen = rounds.count
        if not rounds.lock.acquire(timeout=2 * _CHANGES_TIMEOUT * len(self.nodes) + 1):
            return False
        try:
            if self._trust.at(height)[1] == wanted:
                return True
            if rounds.count != seen or time.monotonic() - rounds.fruitless < RELEARN_INTERVAL:
                return False
            newest = self._trust.newest_change
            try:
                for node in self.nodes:
                    try:
                        self._learn_from(node)
                    except ANSWER_ERRORS as exc:
                        self.failures.append(f"{node}: validator set changes: {exc}")
                    if self._trust.at(height)[1] == wanted:
                        return True
                if self._trust.newest_change == newest:
                    rounds.fruitless = time.monotonic()
                return False
            finally:
                rounds.count += 1
        finally:
            rounds.lock.release()

    def _learn_from(self, node: str) -> None:
        for _ in range(_CHANGE_PAGES):
            data = self._get_json_within(
                node.rstrip("/") + "/validators/changes", {"after": self._trust.newest_change}
            )
            if not isinstance(data, dict):
                raise ValueError("the answer is not a JSON object")
            if (
                not self._trust.learn(ValidatorTrust.parse(data.get("changes")))
                or data.get("more") is not True
            ):
                return

    def _get_json_within(self, url: str, params: Mapping[str, Any]) -> Any:
        """A node's JSON answer, read whole within :data:`_CHANGES_TIMEOUT` and at most
        :data:`_CHANGES_MAX_BYTES`; raise ``httpx.TimeoutException`` or ``ValueError`` otherwise."""
        response = self._http.get(
            url, params=params, extensions={BOUNDS: (_CHANGES_TIMEOUT, _CHANGES_MAX_BYTES)}
        )
        response.raise_for_status()
        return response.json()

    @property
    def seen_height(self) -> int:
        """The highest block height a certified header has shown this client."""
        return self._seen

    def verify_header(self, header: BlockHeader, certificate: CommitCertificate | None) -> None:
        """Check a header's certificate against the trusted validator sets (and its network)."""
        if header.network != self.genesis.network:
            raise InvalidProof("certificate", f"block {header.height} is of network {header.network!r}")
        if header.height == 0:
            if header.previous_hash != self.genesis.hash.hex() or header.state_root != self._genesis_root:
                raise InvalidProof("certificate", "block 0 does not match the trusted genesis")
            return
        if certificate is None:
            raise InvalidProof("certificate", f"block {header.height} has no commit certificate")
        block_hash = header.hash
        if block_hash in self._certified:
            return  # this exact header already proved itself with a quorum of signatures
        try:
            certificate.verify(header, self._validators_for(header))
        except InvalidCertificate as exc:
            raise InvalidProof("certificate", str(exc)) from None
        self._certified[block_hash] = None
        if len(self._certified) > 1024:
            self._certified.popitem(last=False)
        self._seen = max(self._seen, header.height)

    def _proven(self, attempt: Callable[[list[str], int], tuple[_T | None, bool]], min_height: int) -> _T:
        """Run ``attempt(errors, floor)`` (one round over the nodes: its answer or ``None``, and whether
        a node answered as of a block before ``floor``) until it answers; while only nodes behind
        answer, again for up to ``behind_wait`` seconds. ``floor`` is the highest of ``min_height``
        and every height this client has seen."""
        deadline = time.monotonic() + self.behind_wait
        pause = 0.01
        while True:
            errors: list[str] = []
            answer, behind = attempt(errors, max(min_height, self._seen))
            self.failures.extend(errors)
            if answer is not None:
                return answer
            if not behind or time.monotonic() + pause > deadline:
                raise LedgerUnavailable("; ".join(errors) or "no node answered")
            time.sleep(pause)
            pause = min(2 * pause, 0.2)

    # -- reads ------------------------------------------------------------------------------
    def prove(self, key: str) -> tuple[Any, BlockHeader]:
        """The value under ``key`` (``None`` if absent), checked against a certified header no older
        than any this client has seen."""
        return self._proven(lambda errors, floor: self._prove_once(key, floor, errors), 0)

    def _prove_once(
        self, key: str, floor: int, errors: list[str]
    ) -> tuple[tuple[Any, BlockHeader] | None, bool]:
        behind = False
        for node in self.nodes:
            try:
                response = self._http.get(node.rstrip("/") + "/proofs/state", params={"key": key})
                response.raise_for_status()
                answer = StateProof.from_json(response.json())
                if answer.key != key:
                    raise InvalidProof("state", f"asked for {key!r}, answered for {answer.key!r}")
                self.verify_header(answer.header, answer.certificate)
                if answer.header.height < floor:
                    errors.append(
                        f"{node}: answered as of block {answer.header.height}, behind block {floor}"
                    )
                    behind = True
                    continue
                return (answer.verify_path(), answer.header), False
            except ANSWER_ERRORS as exc:
                errors.append(f"{node}: {exc}")
        return None, behind

    def prove_many(
        self, keys: Sequence[str], *, min_height: int | None = None
    ) -> tuple[list[Any], BlockHeader]:
        """The values under ``keys`` (``None`` where absent), all checked against one certified header.

        One request for up to 1,000 keys: how a verifier warms its caches at fleet scale. With
        ``min_height``, a node answering as of an older block is passed over for the next one; when
        every node that answers is behind, they are asked again until one has caught up, for up to
        ``behind_wait`` seconds.
        """
        if not keys:
            return [], self.head()
        return self._proven(lambda errors, floor: self._prove_many_once(keys, floor, errors), min_height or 0)

    def _prove_many_once(
        self, keys: Sequence[str], floor: int, errors: list[str]
    ) -> tuple[tuple[list[Any], BlockHeader] | None, bool]:
        """One round of :meth:`prove_many` over the nodes: the answer (``None`` when no node gave one;
        why goes to ``errors``), and whether a node answered as of a block before ``floor``."""
        behind = False
        for node in self.nodes:
            try:
                response = self._http.post(node.rstrip("/") + "/proofs/state", json={"keys": list(keys)})
                response.raise_for_status()
                data = response.json()
                header = BlockHeader.from_json(data["header"])
                certificate = data["certificate"]
                self.verify_header(
                    header, None if certificate is None else CommitCertificate.from_json(certificate)
                )
                if header.height < floor:
                    errors.append(f"{node}: answered as of block {header.height}, behind block {floor}")
                    behind = True
                    continue
                items = data["proofs"]
                if [item["key"] for item in items] != list(keys):
                    raise InvalidProof("state", "the answer does not prove the keys asked for, in order")
                values = [
                    StateProof(
                        item["key"], item["value"], header, None, MapProof.from_json(item["proof"])
                    ).verify_path()
                    for item in items
                ]
                return (values, header), False
            except ANSWER_ERRORS as exc:
                errors.append(f"{node}: {exc}")
        return None, behind

    def txn_proof(self, txn_id: str) -> tuple[Transaction, BlockHeader]:
        """A committed transaction, proven included in a certified block (RFC 6962 audit path)."""
        errors: list[str] = []
        for node in self.nodes:
            try:
                response = self._http.get(f"{node.rstrip('/')}/txns/{txn_id}/proof")
                response.raise_for_status()
                data = response.json()
                header = BlockHeader.from_json(data["header"])
                certificate = data["certificate"]
                self.verify_header(
                    header, None if certificate is None else CommitCertificate.from_json(certificate)
                )
                txn = Transaction.from_json(data["txn"])
                if txn.id != txn_id:
                    raise InvalidProof("inclusion", f"asked for {txn_id}, answered with {txn.id}")
                merkle.verify_inclusion(
                    canonicalize(txn.to_json()),
                    data["index"],
                    header.txn_count,
                    [bytes.fromhex(h) for h in data["inclusion"]],
                    bytes.fromhex(header.txn_root),
                )
                self.failures.extend(errors)
                return txn, header
            except (*ANSWER_ERRORS, TxnRejected) as exc:
                errors.append(f"{node}: {exc}")
        self.failures.extend(errors)
        raise LedgerUnavailable("; ".join(errors))

    def head(self) -> BlockHeader:
        """A node's newest certified header (checked), no older than any this client has seen; a node
        whose answer does not check out is passed over for the next."""
        return self._proven(self._head_once, 0)

    def highest_head(self, deadline: float = 2.0) -> BlockHeader:
        """The highest certified header the nodes give, all asked at once: for a reader that must not
        take one lagging or lying node's head as the newest. It waits ``deadline`` seconds for all of
        them, then takes the best answer so far (or the first to come, when none has yet), so one node
        that does not answer costs a request no more than that."""
        errors: list[str] = []
        pool = ThreadPoolExecutor(max_workers=len(self.nodes), thread_name_prefix="trellis-head")
        try:
            asked = [pool.submit(self._head_from, [node], errors, 0) for node in self.nodes]
            done, pending = wait(asked, timeout=deadline)
            heads = [found for found, _ in (f.result() for f in done) if found is not None]
            while not heads and pending:  # nothing usable yet: the first good answer to come
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                heads = [found for found, _ in (f.result() for f in done) if found is not None]
        finally:  # a request still under way ends in its thread (the client's timeout); not waited for
            pool.shutdown(wait=False, cancel_futures=True)
        self.failures.extend(errors)
        if not heads:
            raise LedgerUnavailable("; ".join(errors) or "no node answered")
        return max(heads, key=lambda header: header.height)

    def _head_once(self, errors: list[str], floor: int) -> tuple[BlockHeader | None, bool]:
        return self._head_from(self.nodes, errors, floor)

    def _head_from(
        self, nodes: Sequence[str], errors: list[str], floor: int
    ) -> tuple[BlockHeader | None, bool]:
        behind = False
        for node in nodes:
            try:
                response = self._http.get(node.rstrip("/") + "/blocks/head")
                response.raise_for_status()
                data = response.json()
                header = BlockHeader.from_json(data["block"]["header"])
                certificate = data.get("certificate")
                self.verify_header(
                    header, None if certificate is None else CommitCertificate.from_json(certificate)
                )
                if header.height < floor:
                    errors.append(f"{node}: its head is block {header.height}, behind block {floor}")
                    behind = True
                    continue
                return header, False
            except ANSWER_ERRORS as exc:
                errors.append(f"{node}: {exc}")
        return None, behind

    def resolve_record(
        self, did: str, version: int | None = None
    ) -> tuple[dict[str, Any] | None, BlockHeader]:
        """The proven ledger record of ``did`` (current, or one version), or ``None`` if absent."""
        key = f"did:{did}" if version is None else f"didv:{did}:{version}"
        value, header = self.prove(key)
        return value, header

    def resolve_many(self, dids: Sequence[str], *, chunk: int = 500) -> list[ResolutionResult]:
        """Resolve many DIDs of this network with batched, proven reads of ``chunk`` DIDs each.

        The next chunk is fetched while the current one is checked, so the node's work and the
        client's overlap (how a verifier warms its cache for a whole fleet).
        """
        if not 1 <= chunk <= 1000:
            raise ValueError("chunk is 1 to 1,000 DIDs")
        results: dict[int, ResolutionResult] = {}
        wanted: list[tuple[int, str]] = []
        for index, did in enumerate(dids):
            refused = self._refuse(did)
            if refused is not None:
                results[index] = refused
            else:
                wanted.append((index, did))
        batches = [wanted[i : i + chunk] for i in range(0, len(wanted), chunk)]
        with _cyclic_gc_paused(), ThreadPoolExecutor(max_workers=1) as fetcher:
            pending = (
                fetcher.submit(self.prove_many, [f"did:{d}" for _, d in batches[0]]) if batches else None
            )
            for number, batch in enumerate(batches):
                assert pending is not None
                records, _ = pending.result()
                if number + 1 < len(batches):
                    pending = fetcher.submit(self.prove_many, [f"did:{d}" for _, d in batches[number + 1]])
                for (index, did), record in zip(batch, records, strict=True):
                    results[index] = self._result(did, record)
        return [results[i] for i in range(len(dids))]

    def _refuse(self, did: str) -> ResolutionResult | None:
        try:
            network = parse_trellis_did(did).network
        except InvalidDID as exc:
            method = did.split(":")[1] if did.count(":") >= 2 else ""
            if did.startswith("did:") and method and method != "trellis":
                return ResolutionResult.failure(
                    METHOD_NOT_SUPPORTED, f"this client resolves did:trellis, not did:{method}"
                )
            return ResolutionResult.failure(INVALID_DID, exc.reason)
        if network != self.genesis.network:
            return ResolutionResult.failure(
                NOT_FOUND, f"{did} belongs to network {network!r}, not {self.genesis.network!r}"
            )
        return None

    @staticmethod
    def _result(did: str, record: dict[str, Any] | None) -> ResolutionResult:
        if record is None:
            return ResolutionResult.failure(NOT_FOUND, f"{did} is not on the ledger")
        metadata = DocumentMetadata(
            created=parse_timestamp(record["created"]),
            updated=parse_timestamp(record["updated"]),
            deactivated=bool(record["deactivated"]),
            version_id=str(record["version"]),
        )
        return ResolutionResult.success(DIDDocument.from_json(record["document"]), metadata)

    def resolve(self, did: str, *, version_id: str | None = None) -> ResolutionResult:
        """A W3C DID Resolution result built from a proven record."""
        refused = self._refuse(did)
        if refused is not None:
            return refused
        version = None
        if version_id is not None:
            if not _VERSION_ID.fullmatch(version_id):  # a bad resolution option, not a bad DID
                return ResolutionResult.failure(
                    INVALID_OPTIONS, "versionId is a decimal version number from 1"
                )
            version = int(version_id)
        record, _ = self.resolve_record(did, version)
        return self._result(did, record)

    # -- writes -----------------------------------------------------------------------------
    def submit(self, txns: Sequence[Transaction] | Transaction) -> list[str]:
        """Submit transactions (all or nothing); return their ids. Raises :class:`TxnRejected`.

        A node's refusal is not taken on its word while another node may admit them: the next node
        is asked, and the first refusal is raised only once every node has refused or failed (one
        lying node cannot keep a client's transactions out), as :class:`RefusedByEveryNode` when
        every node refused (4xx) and none failed. A 503 ``overloaded`` is the network asking for a
        pause, raised at once."""
        batch = [txns] if isinstance(txns, Transaction) else list(txns)
        body = [t.to_json() for t in batch]
        errors: list[str] = []
        refused: TxnRejected | None = None
        codes: list[str] = []  # the code of each node that answered with a 4xx refusal
        for node in self.nodes:
            try:
                response = self._http.post(
                    node.rstrip("/") + "/txns", json=body if len(body) != 1 else body[0]
                )
                if response.status_code == 202:
                    ids = [str(item["id"]) for item in response.json()["txns"]]
                    self.failures.extend(errors)  # nodes that failed or refused what another admitted
                    return ids
            except (httpx.HTTPError, ValueError, KeyError, TypeError, RecursionError) as exc:
                errors.append(f"{node}: {exc!r}"[:500])
                continue
            if response.status_code >= 500 and response.status_code != 503:
                errors.append(f"{node}: HTTP {response.status_code}")
                continue
            try:
                problem = response.json()
            except (ValueError, RecursionError):
                problem = None
            problem = problem if isinstance(problem, dict) else {}
            rejection = TxnRejected(
                str(problem.get("code", "malformed")),
                str(problem.get("detail", response.text[:200])),
                txn_id=problem.get("txn") if isinstance(problem.get("txn"), str) else None,
            )
            if response.status_code == 503:
                raise rejection
            errors.append(f"{node}: refused: {rejection.code}: {rejection.detail}"[:500])
            refused = refused or rejection
            if 400 <= response.status_code < 500:
                codes.append(rejection.code)
        self.failures.extend(errors)
        if refused is not None and len(codes) == len(self.nodes):
            raise RefusedByEveryNode(refused.code, refused.detail, txn_id=refused.txn_id, codes=codes)
        if refused is not None:
            raise refused
        raise LedgerUnavailable("; ".join(errors))

    def wait(self, txn_ids: Sequence[str], timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until each transaction is committed or rejected (or ``timeout``); return their status."""
        deadline = time.monotonic() + timeout
        results: dict[str, dict[str, Any]] = {}
        waiting = list(dict.fromkeys(txn_ids))
        while waiting:
            left = deadline - time.monotonic()
            chunk = waiting[:_STATUS_CHUNK]
            statuses = self._statuses(chunk, max(0.0, min(left, 10.0)))
            said = {s["id"]: s for s in statuses if isinstance(s, dict) and isinstance(s.get("id"), str)}
            settled = 0
            for txn_id in chunk:
                status = said.get(txn_id)
                if status is not None and status.get("status") in ("committed", "rejected"):
                    results[txn_id] = status
                    settled += 1
            if left <= 0:  # out of time: what a node said last, else pending
                for txn_id in waiting:
                    results.setdefault(txn_id, said.get(txn_id) or {"id": txn_id, "status": "pending"})
                break
            waiting = [i for i in waiting if i not in results]
            if waiting and not settled:
                time.sleep(0.05)  # unknown to the node yet (forwarded elsewhere): do not spin
        return [results[i] for i in txn_ids]

    def statuses(self, txn_ids: Sequence[str]) -> list[dict[str, Any]]:
        """What the first node that answers says of each transaction now, without waiting: its
        ``status`` is ``pending``, ``committed``, ``rejected`` or ``unknown`` (also for one the node
        does not name). A node's word, not proven: :meth:`wait_committed` proves a commit."""
        ids, said = list(dict.fromkeys(txn_ids)), {}
        for start in range(0, len(ids), _STATUS_CHUNK):
            for status in self._statuses(ids[start : start + _STATUS_CHUNK], 0.0):
                if isinstance(status, dict) and isinstance(status.get("id"), str):
                    said[status["id"]] = status
        return [said.get(i) or {"id": i, "status": "unknown"} for i in txn_ids]

    def _statuses(self, txn_ids: Sequence[str], wait: float) -> list[dict[str, Any]]:
        """``POST /txns/status`` at the first node that answers."""
        node, response = self._request(
            "POST", "/txns/status", json={"ids": list(txn_ids), "wait": round(wait, 2)}, timeout=wait + 10.0
        )
        if response.status_code != 200:
            self.failures.append(f"{node}: HTTP {response.status_code}")
            raise LedgerUnavailable(f"{node}: HTTP {response.status_code} for POST /txns/status")
        answer: list[dict[str, Any]] = response.json()["txns"]
        return answer

    def submit_and_wait(
        self, txns: Sequence[Transaction] | Transaction, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Submit, then wait for every transaction; raise :class:`TxnRejected` for a rejected one."""
        return self.wait_committed(self.submit(txns), timeout)

    def wait_committed(self, txn_ids: Sequence[str], timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait for every transaction of ``txn_ids`` to commit, each proven in a certified block;
        raise :class:`TxnRejected` for a rejected one and :class:`LedgerUnavailable` for one not
        committed within ``timeout``. For transactions submitted earlier (a node answered
        ``replay``: it holds them already)."""
        statuses = self.wait(txn_ids, timeout)
        for status in statuses:
            if status.get("status") == "rejected":
                raise TxnRejected(
                    status.get("code", "rejected"), status.get("detail", ""), txn_id=status["id"]
                )
            if status.get("status") != "committed":
                raise LedgerUnavailable(f"transaction {status['id']} not committed within {timeout} s")
            self.txn_proof(status["id"])  # a node's word is not enough: included in a certified block
        return statuses

    # -- the header stream ------------------------------------------------------------------
    def follow(self, after: int | None = None, *, max_events: int | None = None) -> Iterator[BlockHeader]:
        """Yield each new certified header (checked), in height order, from nodes' event streams.

        A stream that ends after delivering headers is resumed from the same node with
        ``Last-Event-ID``; a node that fails or delivers nothing makes the client try the next one.
        """
        last, seen, idle, turn = after, 0, 0, 0
        while idle < len(self.nodes):
            node = self.nodes[turn % len(self.nodes)]
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            delivered = heard = stalled = False
            try:
                with self._http.stream(  # heartbeats come every few seconds: silence means a dead stream
                    "GET",
                    node.rstrip("/") + "/events",
                    headers=headers,
                    timeout=httpx.Timeout(10.0, read=_STREAM_READ_TIMEOUT),
                    extensions={BOUNDS: (None, None)},  # the stream lasts; each line is bounded
                ) as stream:
                    stream.raise_for_status()  # a 503 (the node serves enough streams) is no stream
                    quiet_since = time.monotonic()
                    for line in bounded_lines(stream, MAX_EVENT_BYTES):
                        heard = True
                        if not line.startswith("data:"):
                            if time.monotonic() - quiet_since > _STALL_CHECK:
                                if self._ahead_of(last, node):
                                    self.failures.append(f"{node}: its stream stopped while others went on")
                                    stalled = True
                                    break
                                quiet_since = time.monotonic()
                            continue
                        quiet_since = time.monotonic()
                        data = json.loads(line[5:])
                        header = BlockHeader.from_json(data["header"])
                        certificate = data.get("certificate")
                        self.verify_header(
                            header, None if certificate is None else CommitCertificate.from_json(certificate)
                        )
                        if last is not None and header.height <= last:
                            continue
                        last, delivered = header.height, True
                        yield header
                        seen += 1
                        if max_events is not None and seen >= max_events:
                            return
            except ANSWER_ERRORS as exc:
                self.failures.append(f"{node}: {exc}")
                heard = False
            if delivered or (heard and not stalled):  # a live stream the node ended (its lifetime): resume
                idle = 0
            else:
                idle, turn = idle + 1, turn + 1
        raise LedgerUnavailable("no node's header stream delivers new headers")

    def _ahead_of(self, height: int | None, node: str) -> bool:
        """Whether a node other than ``node`` shows a certified head above ``height``."""
        if height is None:
            return False
        for other in self.nodes:
            if other != node:
                header, _ = self._head_from([other], [], 0)
                if header is not None and header.height > height:
                    return True
        return False


class TrellisResolver:
    """A :class:`~did_registry.identity.resolution.Resolver` for ``did:trellis`` through a client."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client

    def resolve(self, did: str, options: ResolutionOptions | None = None) -> ResolutionResult:
        """Resolve with every proof checked; ``versionId`` is honoured."""
        version = (options or {}).get("versionId")
        try:
            return self.client.resolve(did, version_id=None if version is None else str(version))
        except LedgerUnavailable as exc:
            return ResolutionResult.failure("internalError", str(exc))
