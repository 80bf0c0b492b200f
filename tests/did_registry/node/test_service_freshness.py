"""The node's own solo block producer commits an empty block when none came for ``freshness_interval``
(``docs/consensus.md`` § Freshness), so the newest certified block time shows readers it is live."""

from __future__ import annotations

import time

from tests.did_registry.node.conftest import make_node


def test_an_idle_solo_node_commits_empty_blocks_every_interval() -> None:
    node = make_node(block_interval=0.01, freshness_interval=0.2)
    node.service.start()
    try:
        deadline = time.monotonic() + 10
        while node.service.app.height < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert node.service.app.height >= 3
        for height in range(1, 4):
            stored = node.service.app.store.block(height)
            assert stored is not None and stored[0].txns == ()
    finally:
        node.service.stop()


def test_with_freshness_off_an_idle_solo_node_commits_nothing() -> None:
    node = make_node(block_interval=0.01, freshness_interval=0.0)
    node.service.start()
    try:
        time.sleep(0.5)
        assert node.service.app.height == 0
    finally:
        node.service.stop()


def test_a_block_of_requests_resets_the_interval() -> None:
    """Blocks of requests keep the ledger live: no empty block comes while they do."""
    node = make_node(block_interval=0.01, freshness_interval=0.5)
    node.service.start()
    try:
        for _ in range(6):
            node.service.produce_block(empty=True)  # (a committed block, as a request's would be)
            time.sleep(0.1)
        assert node.service.app.height == 6  # none of the producer's own
    finally:
        node.service.stop()
