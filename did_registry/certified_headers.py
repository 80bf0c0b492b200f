"""Certified headers: a block header checked against a commit certificate of the validator set
trusted at its height, and the validator set changes learned from the nodes to know that set.

A part of :class:`~did_registry.client.LedgerClient`. Validator set changes are followed through the
chain (:mod:`did_registry.validator_trust`): a header naming a set the client does not trust at its
height makes it ask the nodes for the changes since the newest it knows (``GET /validators/changes``),
each proven against a header certified by the set before it. A set no node proves is refused with
:class:`UntrustedValidatorSet` (after a round of questions that learned nothing, none is asked for
:data:`RELEARN_INTERVAL`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from did_registry.bounded_http import BOUNDS
from did_registry.errors import InvalidProof
from did_registry.ledger.block import BlockHeader, CommitCertificate, InvalidCertificate
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.validators import ValidatorSet
from did_registry.node_answers import ANSWER_ERRORS, NodeAnswers
from did_registry.validator_trust import ValidatorTrust

__all__ = [
    "RELEARN_INTERVAL",
    "CertifiedHeaders",
    "UntrustedValidatorSet",
]


class UntrustedValidatorSet(InvalidProof):
    """A header is certified by a validator set this client has not been given to trust."""


RELEARN_INTERVAL = 1.0
"""Seconds after a round of questions about validator set changes that learned nothing before the
client asks again (a node showing headers of sets nobody proves costs one round a second, whatever
sets it names, not a round per answer)."""
_CHANGE_PAGES = 100  # pages of validator set changes asked of one node in one go (100 changes each)
_CHANGES_TIMEOUT = 2.0  # seconds one node has to answer GET /validators/changes, whole
_CHANGES_MAX_BYTES = 16 * 1024 * 1024  # the most one such answer may hold


class CertifiedHeaders(NodeAnswers):
    """Checking headers' certificates against the validator sets a
    :class:`~did_registry.client.LedgerClient` trusts, and learning the sets the chain hands over to."""

    genesis: Genesis
    _genesis_root: str
    _trust: ValidatorTrust
    _certified: OrderedDict[bytes, None]
    _seen: int

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

    def certified_header(self, header: Any, certificate: Any) -> BlockHeader:
        """The header a node answered (its JSON), checked with :meth:`verify_header` against the
        certificate it came with (JSON, or ``None``)."""
        parsed = BlockHeader.from_json(header)
        self.verify_header(parsed, None if certificate is None else CommitCertificate.from_json(certificate))
        return parsed

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
