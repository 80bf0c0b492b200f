"""``save_snapshot`` writes nothing it could not load: a head certified by a validator set the saver
trusts only out of band (``LedgerClient.trust_validators``, no node proving the change) does not
travel with the snapshot, so the file would be refused by every verifier loading it from genesis."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.verifier.hostile_chain import authenticate, hand_chain
from verifier import ConfigurationError, NetworkTrust, Verifier


def _withholding(app: Any) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """``app``, but ``GET /validators/changes`` answers 404: no node proves a set change."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/validators/changes":
            start_response("404 NOT FOUND", [("Content-Type", "application/json")])
            return [json.dumps({"code": "not_found"}).encode()]
        result: Iterable[bytes] = app(environ, start_response)
        return result

    return wrapped


def test_a_head_certified_by_a_set_trusted_out_of_band_is_not_written(tmp_path: Path) -> None:
    ledger = hand_chain()
    chain = ledger.hand
    trust = NetworkTrust(
        "testnet",
        ("http://node-1",),
        ledger.genesis,
        transport=httpx.WSGITransport(app=_withholding(chain.wsgi)),
    )
    device = ledger.enrol()
    chain.block(chain.add("v5", chain.height + 2))
    chain.empty_blocks(2)
    path = tmp_path / "snapshot.json"
    with Verifier([trust], follow=False, clock=ledger.clock) as verifier:
        verifier.client("testnet").trust_validators(chain.app.validators())
        assert authenticate(ledger, verifier, device) == device.did
        with pytest.raises(ConfigurationError) as refused:
            verifier.save_snapshot(path)
    message = str(refused.value)
    assert "'testnet'" in message and f"block {chain.height}" in message and "out of band" in message
    assert not path.exists() and not list(tmp_path.iterdir())


def test_a_snapshot_whose_set_changes_are_proven_is_written_and_loads(tmp_path: Path) -> None:
    """The same change proven by the node: the snapshot carries it and loads from genesis alone."""
    ledger = hand_chain()
    chain = ledger.hand
    device = ledger.enrol()
    chain.block(chain.add("v5", chain.height + 2))
    chain.empty_blocks(2)
    path = tmp_path / "snapshot.json"
    with ledger.verifier() as verifier:
        assert authenticate(ledger, verifier, device) == device.did
        verifier.save_snapshot(path)
    assert len(json.loads(path.read_text())["networks"][0]["validator_changes"]) == 1
    offline = NetworkTrust("testnet", (), ledger.genesis)
    with Verifier.from_snapshot(path, [offline], clock=ledger.clock, follow=False) as edge:
        assert authenticate(ledger, edge, device) == device.did
