"""GET /validators/changes: each validator set change, proven by the record of the block before it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from did_registry.ledger.genesis import genesis_state
from did_registry.ledger.proofs import StateProof
from did_registry.ledger.state import decode_value
from did_registry.ledger.storage.base import LedgerStore
from did_registry.ledger.storage.sql import SQLLedgerStore
from did_registry.ledger.validators import ValidatorSet, record_at, set_at
from did_registry.node import service as service_module
from tests.did_registry.node.conftest import PROBLEM_JSON
from tests.did_registry.validator_chain import SetChangeChain

CHANGES = [3, 6, 9]
"""The heights the chain of :func:`chain` changes its validator set at (10 holds a moot change)."""


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore | None]:
    """Each store: memory (blocks walked), SQLite and PostgreSQL (indexed reads)."""
    made = None
    if request.param == "sqlite":
        made = SQLLedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}", durable=False)
    elif request.param == "postgresql":
        made = SQLLedgerStore(request.getfixturevalue("postgres_url"), durable=False)
    yield made
    if made is not None:
        made.close()


@pytest.fixture
def chain(store: LedgerStore | None) -> SetChangeChain:
    """One validator, v1; v2 added at 3, its key rotated at 6, removed at 9; a moot second removal due
    at 10; empty blocks between, up to head 11."""
    made = SetChangeChain(1, store=store)
    made.block(made.add("v2", 3))  # block 1
    made.empty_blocks(2)
    made.block(made.rotate("v2", 6))  # block 4
    made.empty_blocks(2)
    made.block(made.remove("v2", 10))  # block 7: moot by then
    made.block(made.remove("v2", 9))  # block 8
    made.empty_blocks(3)
    assert made.height == 11
    assert made.header(10).validators_hash == made.header(9).validators_hash  # the moot change
    return made


def _changes(chain: SetChangeChain, **query: Any) -> dict[str, Any]:
    response = chain.http.get("/validators/changes", query_string=query)
    assert response.status_code == 200, response.get_json()
    answer: dict[str, Any] = response.get_json()
    return answer


def _heights(answer: dict[str, Any]) -> list[int]:
    """The heights the listed changes take effect at."""
    return [item["height"] + 1 for item in answer["changes"]]


def test_each_height_where_the_set_changed_is_listed_and_the_moot_change_is_not(
    chain: SetChangeChain,
) -> None:
    """Heights 3, 6 and 9, oldest first; 10 (its change was dropped as moot) is not."""
    answer = _changes(chain)
    assert _heights(answer) == CHANGES and answer["head"] == 11 and answer["more"] is False


def test_each_item_is_the_record_of_the_block_before_the_change(chain: SetChangeChain) -> None:
    """Each item proves key ``validators`` against header x - 1 with its commit certificate."""
    for item in _changes(chain)["changes"]:
        proof = StateProof.from_json(item)
        found = chain.service.app.store.block(proof.header.height)
        assert found is not None
        assert proof.key == "validators" and proof.header == found[0].header and proof.certificate == found[1]


def test_each_item_verifies_under_the_set_the_item_before_it_put_in_force(chain: SetChangeChain) -> None:
    """A reader starting from genesis checks every item's certificate and path with the set it
    learned from the item before."""
    trusted = ValidatorSet.from_json(chain.genesis.validators)
    for item in _changes(chain)["changes"]:
        proof = StateProof.from_json(item)
        record = proof.verify(trusted)
        assert record == item["value"]
        trusted = set_at(record, proof.header.height + 1)
    assert trusted.hash() == chain.header(11).validators_hash


def test_each_record_gives_the_set_the_next_header_names(chain: SetChangeChain) -> None:
    """``set_at(value, height + 1)`` is the set header ``height + 1`` names."""
    for item in _changes(chain)["changes"]:
        proof = StateProof.from_json(item)
        height = proof.header.height + 1
        assert set_at(proof.value, height).hash() == chain.header(height).validators_hash
        assert chain.header(height).validators_hash != proof.header.validators_hash


@pytest.mark.parametrize(
    ("after", "expected"), [(0, CHANGES), (2, CHANGES), (3, [6, 9]), (8, [9]), (9, []), (50, [])]
)
def test_after_lists_only_the_changes_above_it(
    chain: SetChangeChain, after: int, expected: list[int]
) -> None:
    """``after=H`` lists the changes taking effect above height H."""
    answer = _changes(chain, after=after)
    assert _heights(answer) == expected and answer["more"] is False


def test_limit_pages_and_more_says_whether_changes_follow(chain: SetChangeChain) -> None:
    """``limit`` bounds the page; ``more`` is true while changes follow the last one listed."""
    first = _changes(chain, limit=2)
    assert _heights(first) == [3, 6] and first["more"] is True
    second = _changes(chain, after=_heights(first)[-1], limit=2)
    assert _heights(second) == [9] and second["more"] is False


def test_a_change_committed_after_an_answer_is_listed_once_it_takes_effect(chain: SetChangeChain) -> None:
    """Pending changes are not listed until their height is committed; then they are."""
    assert _heights(_changes(chain)) == CHANGES
    chain.block(chain.add("v3", 14))  # block 12
    chain.block()  # 13
    assert _heights(_changes(chain)) == CHANGES
    chain.block()  # 14: v3 joins
    answer = _changes(chain, after=9)
    assert _heights(answer) == [14] and answer["head"] == 14
    assert set_at(answer["changes"][0]["value"], 14).hash() == chain.header(14).validators_hash


def test_a_node_whose_set_never_changed_answers_an_empty_list(store: LedgerStore | None) -> None:
    """No change: an empty list, with the head."""
    chain = SetChangeChain(1, store=store)
    chain.empty_blocks(2)
    assert _changes(chain) == {"head": 2, "changes": [], "more": False}


def test_the_replayed_record_at_the_head_is_the_stored_record(chain: SetChangeChain) -> None:
    """``record_at`` replays the committed validator transactions to the record the store holds."""
    service = chain.service
    genesis = genesis_state(service.app.genesis).get_json("validators")
    events = []
    for height in range(1, service.app.height + 1):
        found = service.app.store.block(height)
        assert found is not None
        for txn in found[0].txns:
            change = {k: v for k, v in txn.body.items() if k != "effective_height"}
            events.append((height, txn.type.removeprefix("validator."), change, txn.body["effective_height"]))
    raw = service.app.store.get("validators")
    assert raw is not None
    assert record_at(genesis, events, service.app.height) == decode_value(raw)


def test_an_item_that_does_not_verify_is_never_served(
    chain: SetChangeChain, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A record that does not match the certified state root ends the list there, logged."""

    def wrong(genesis: Any, events: Any, height: int) -> Any:
        return {"set": genesis["set"], "pending": []} if height >= 5 else record_at(genesis, events, height)

    monkeypatch.setattr(service_module, "record_at", wrong)
    with caplog.at_level(logging.ERROR, logger="did_registry.node"):
        answer = _changes(chain)
    assert _heights(answer) == [3] and answer["more"] is True
    assert "cannot prove the validator set change at height 6" in caplog.text


@pytest.mark.parametrize(
    "query", ["?after=-1", "?after=x", "?after=1.5", "?limit=0", "?limit=101", "?limit=a"]
)
def test_bad_arguments_are_400_problems(query: str) -> None:
    """``after`` is a height, ``limit`` from 1 to 100; anything else is a malformed problem."""
    response = SetChangeChain(1).http.get(f"/validators/changes{query}")
    assert response.status_code == 400 and response.mimetype == PROBLEM_JSON
    assert response.get_json()["code"] == "malformed"
