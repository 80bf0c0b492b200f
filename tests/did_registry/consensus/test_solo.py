"""The one-validator engine: batches, self-signs, commits; its certificate passes the ledger check."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from did_registry.consensus import Solo
from did_registry.consensus.base import SetTimer
from did_registry.consensus.messages import Prepare
from did_registry.identity.crypto import sha256
from did_registry.identity.jcs import canonicalize
from did_registry.ledger.block import BlockHeader
from tests.did_registry.consensus.conftest import TESTING, committed, make_net


def test_solo_commits_a_batch_by_time() -> None:
    """Requests are committed together once the batch timeout passes, certified by the one validator."""
    net = make_net(1)
    engine = net.solo()
    engine.on_tick(0.0)
    assert committed(engine.on_request(b"a")) == [] and committed(engine.on_request(b"b")) == []
    [done] = committed(engine.on_tick(TESTING.batch_timeout))
    assert done.height == 1 and net.apps["v0"].requests(done.block) == [b"a", b"b"]
    assert done.certificate.block_hash == sha256(done.block).hex() and list(done.certificate.signatures) == [
        "v0"
    ]


def test_solo_waits_for_each_block_to_be_applied() -> None:
    """After committing block 1 the engine asks for a tick; block 2 is built on the applied head."""
    net = make_net(1)
    engine = net.solo(replace(TESTING, batch_size=1))
    engine.on_tick(0.0)
    out = engine.on_request(b"a")
    [first] = committed(out)
    assert SetTimer("continue", 0.0) in out, "block 2 is for the next call, once block 1 is applied"
    net.apps["v0"].apply(1, first.block)
    [second] = committed(engine.on_request(b"b"))
    assert second.height == 2 and net.apps["v0"].requests(second.block) == [b"b"]


def test_solo_drops_messages() -> None:
    """The solo engine expects no messages; a validly signed one is dropped and counted."""
    net = make_net(1)
    engine = net.solo()
    message = net.sign(Prepare(sender="v0", view=0, seq=1, digest=bytes(32)))
    assert engine.on_message("v0", message) == [] and engine.dropped == {"own-message": 1}


class HeaderApp:
    """A BlockApp whose blocks are ledger headers, so certificates can be checked by the ledger."""

    def __init__(self, validators_hash: str) -> None:
        self.validators_hash = validators_hash
        self.height = 0

    def propose(self, height: int, requests: Sequence[bytes], time: str) -> bytes | None:
        """A header of ``len(requests)`` transactions."""
        header = BlockHeader(
            "testnet",
            height,
            "00" * 32,
            "2026-01-01T00:00:00Z",
            "v0",
            len(requests),
            "00" * 32,
            "11" * 32,
            self.validators_hash,
        )
        return canonicalize(header.to_json())

    def validate(self, height: int, block: bytes) -> bytes:
        """The header's hash."""
        return self.digest(block)

    def timely(self, block: bytes) -> bool:
        """Solo never asks (it validates no proposal)."""
        return True

    def digest(self, block: bytes) -> bytes:
        """The header's hash, as the ledger computes it."""
        return BlockHeader.from_json(json.loads(block)).hash

    def requests(self, block: bytes) -> list[bytes]:
        """Headers carry no requests here."""
        return []

    def check(self, request: bytes) -> bool:
        """Every request is acceptable."""
        return True

    def check_many(self, requests: Sequence[bytes]) -> list[bool]:
        """Every request is acceptable."""
        return [True] * len(requests)


def test_solo_certificate_passes_the_ledger_check() -> None:
    """A block certified by the solo engine passes CommitCertificate.verify with the validator set."""
    net = make_net(1)
    app = HeaderApp(net.validators.hash())
    engine = Solo("v0", net.keys["v0"], net.validators, app, TESTING)
    engine.on_tick(0.0)
    engine.on_request(b"tx")
    [done] = committed(engine.on_tick(1.0))
    done.certificate.verify(BlockHeader.from_json(json.loads(done.block)), net.validators)
