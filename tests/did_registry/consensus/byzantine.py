"""Hostile peers for the simulator: byzantine validators and an outsider.

A byzantine validator runs an honest engine (so it still counts towards quorums when it pleases) and
tampers with what the engine sends, and now and then injects mischief of its own. Behaviours:

``equivocate``          as primary, send different PRE-PREPAREs (both valid blocks) to different backups
``conflicting-votes``   PREPARE / COMMIT / CERTIFY for a random digest, to some peers
``forge``               messages that claim another validator as sender (bad signatures)
``corrupt``             junk bytes, truncated JSON, wrong member types, flipped signature bytes
``bogus-view-change``   VIEW-CHANGEs for far views with forged certificates; NEW-VIEWs it may not send
``replay``              old messages (its own and others', validly signed) sent again much later
``silent``              drops its own messages for a while
``censor``              never takes the censored requests (from one client): as primary it commits
                        every other request and never those (its engine never hears of them)

The outsider holds a key that is not in the validator set and sends well-signed messages as "mallory".
"""

from __future__ import annotations

import random
from dataclasses import replace

from did_registry.consensus.errors import InvalidMessage
from did_registry.consensus.messages import (
    Certify,
    Commit,
    Message,
    NewView,
    Overtaken,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    ViewChange,
    decode,
    encode,
)
from did_registry.identity.crypto import Ed25519PrivateKey, sha256
from did_registry.identity.multibase import encode_base58btc
from did_registry.ledger.block import CommitCertificate
from tests.did_registry.consensus.fake_app import make_block

__all__ = ["BEHAVIOURS", "Byzantine", "Outsider"]

BEHAVIOURS = (
    "equivocate",
    "conflicting-votes",
    "forge",
    "corrupt",
    "bogus-view-change",
    "replay",
    "silent",
    "censor",
)

Packet = tuple[str, bytes]  # (recipient, wire bytes)


class Byzantine:
    """Tampers with one validator's outgoing messages and makes up its own."""

    def __init__(
        self,
        rng: random.Random,
        me: str,
        key: Ed25519PrivateKey,
        ids: list[str],
        behaviours: frozenset[str],
        censored: frozenset[bytes] = frozenset(),
    ) -> None:
        self.rng = rng
        self.me = me
        self.key = key
        self.ids = ids
        self.behaviours = behaviours
        self.censored = censored if "censor" in behaviours else frozenset()
        self.seen: list[bytes] = []
        self.silent_until = 0.0
        self._twins: dict[tuple[int, int], PrePrepare] = {}

    def observe(self, payload: bytes) -> None:
        """Remember a message for replaying later."""
        if len(self.seen) < 400:
            self.seen.append(payload)
        else:
            self.seen[self.rng.randrange(400)] = payload

    def censors(self, request: bytes) -> bool:
        """Whether a client request given to this validator is kept from its engine."""
        return request in self.censored

    def refuses(self, payload: bytes) -> bool:
        """Whether an incoming message is kept from the engine: a REQUEST or OVERTAKEN that carries a
        censored request (the engine never hears of it, so as primary it never proposes it; the
        message goes whole, since the censor cannot sign the rest again as its sender)."""
        if not self.censored:
            return False
        try:
            message = decode(payload)
        except InvalidMessage:
            return False
        return isinstance(message, Request | Overtaken) and not self.censored.isdisjoint(message.requests)

    def outgoing(self, message: Message, recipients: list[str], now: float) -> list[Packet]:
        """What actually leaves for ``recipients`` when the engine sends ``message``."""
        payload = encode(message)
        self.observe(payload)
        if "silent" in self.behaviours:
            if now < self.silent_until:
                return []
            if self.rng.random() < 0.02:
                self.silent_until = now + self.rng.uniform(0.2, 2.0)
        packets: list[Packet] = []
        for index, to in enumerate(recipients):
            packets.append((to, encode(self._tampered(message, index)) if self._tamper(message) else payload))
        return packets

    def _tamper(self, message: Message) -> bool:
        if isinstance(message, PrePrepare):
            return "equivocate" in self.behaviours
        if isinstance(message, Prepare | Commit | Certify):
            return "conflicting-votes" in self.behaviours and self.rng.random() < 0.5
        return False

    def _tampered(self, message: Message, index: int) -> Message:
        if isinstance(message, PrePrepare):
            if index % 2 == 0:
                return message
            key = (message.view, message.seq)
            if key not in self._twins:
                block = make_block(message.seq, [b"twin-%d-%d" % (message.seq, self.rng.randrange(10**9))])
                self._twins[key] = replace(message, block=block, digest=sha256(block)).signed(self.key)
            return self._twins[key]
        digest = self.rng.randbytes(32)
        if isinstance(message, Certify):
            return replace(
                message, digest=digest, commit_signature=CommitCertificate.sign(digest, self.key)
            ).signed(self.key)
        assert isinstance(message, Prepare | Commit)
        return replace(message, digest=digest).signed(self.key)

    def mischief(self) -> list[Packet]:
        """Messages made up from scratch, to random validators."""
        packets: list[Packet] = []
        to = self.rng.choice([i for i in self.ids if i != self.me])
        if "forge" in self.behaviours:
            victim = self.rng.choice(self.ids)
            forged = Prepare(
                sender=victim,
                view=self.rng.randrange(3),
                seq=self.rng.randrange(1, 20),
                digest=self.rng.randbytes(32),
            )
            packets.append((to, encode(forged.signed(self.key))))
        if "corrupt" in self.behaviours:
            packets.append((to, self._junk()))
        if "bogus-view-change" in self.behaviours:
            packets.append((to, encode(self._bogus_view_change())))
        if "replay" in self.behaviours and self.seen:
            packets.append((to, self.rng.choice(self.seen)))
        return packets

    def _junk(self) -> bytes:
        choice = self.rng.randrange(5)
        if choice == 0:
            return self.rng.randbytes(self.rng.randrange(1, 200))
        if choice == 1 and self.seen:
            sample = self.rng.choice(self.seen)
            return sample[: self.rng.randrange(len(sample))]
        if choice == 2:
            return b'{"type":"pbft/prepare","sender":"v1","view":"0","seq":1,"digest":"00","signature":"z1"}'
        if choice == 3 and self.seen:
            flipped = bytearray(self.rng.choice(self.seen))
            flipped[self.rng.randrange(len(flipped))] ^= 1 << self.rng.randrange(8)
            return bytes(flipped)
        return b'{"type":"pbft/new-view","sender":"v0","view":1,"view_changes":[[[[[[[[[]]]]]]]]],"pre_prepare":null,"signature":"z"}'

    def _bogus_view_change(self) -> Message:
        view = self.rng.randrange(1, 50)
        fake_signatures = {v: encode_base58btc(self.key.sign(b"nonsense")) for v in self.ids}
        executed = CommitCertificate(
            self.rng.randrange(1, 10_000), self.rng.randbytes(32).hex(), fake_signatures
        )
        block = make_block(7, [b"bogus"])
        pre_prepare = PrePrepare(
            sender=self.me, view=0, seq=executed.height + 1, digest=sha256(block), block=block
        )
        prepares = tuple(
            Prepare(sender=v, view=0, seq=pre_prepare.seq, digest=pre_prepare.digest).signed(self.key)
            for v in self.ids
        )
        prepared = PreparedCertificate(pre_prepare.signed(self.key), prepares)
        change = ViewChange(sender=self.me, view=view, executed=executed, prepared=prepared).signed(self.key)
        if self.rng.random() < 0.5:
            return change
        honest_looking = ViewChange(sender=self.me, view=view, executed=None, prepared=None).signed(self.key)
        return NewView(
            sender=self.me, view=view, view_changes=(honest_looking, change), pre_prepare=None
        ).signed(self.key)


class Outsider:
    """A party outside the validator set: well-signed messages that must be refused."""

    def __init__(self, rng: random.Random, ids: list[str]) -> None:
        self.rng = rng
        self.ids = ids
        self.key = Ed25519PrivateKey(rng.randbytes(32))

    def mischief(self) -> list[Packet]:
        """One message from "mallory" to a random validator."""
        to = self.rng.choice(self.ids)
        message = Prepare(
            sender="mallory", view=0, seq=self.rng.randrange(1, 20), digest=self.rng.randbytes(32)
        )
        return [(to, encode(message.signed(self.key)))]
