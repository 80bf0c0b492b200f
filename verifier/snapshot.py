"""Certified snapshots: what a verifier has cached, with proofs, so that it can work at the edge.

:func:`save_snapshot` proves every cached record again against the head (one proven read per 1,000
keys) and writes, per network, the certified header, its commit certificate and each record with its
sparse-Merkle path, plus when the head was confirmed. Every section of a network is proven against
one and the same certified head: when the head moves on between two batches, the batches proven
against an older head are proven again (five rounds at most, then ``LedgerUnavailable``).

:func:`load_snapshot` trusts nothing in the file: each certificate is checked against the trust
anchor the caller gives (the network's genesis validators), each record against its header's state
root, and the sections of one network must all carry the same header, in one item (a spliced
snapshot is refused, and so is one naming a network twice). ``confirmed_at`` is when the saver
last confirmed the head, a claim no certificate covers, so the loaded verifier's
:meth:`~verifier.Verifier.staleness` counts from the earlier of ``confirmed_at`` and the certified
header's ``time`` plus the policy's ``clock_skew``: a snapshot never looks fresher than its head (on
a quiet network, whose last block is old, it looks as old as that block). Once no node answers for
longer than the policy's ``offline_max_staleness`` it refuses with ``too_stale``. When nodes are
reachable it catches up from the snapshot's height, dropping what the blocks since then changed.

Validator set changes since genesis travel with the snapshot: ``validator_changes`` holds the
proofs the saver's client learned them by (``GET /validators/changes``), and loading checks each
against the set before it, from the genesis set up (:class:`did_registry.validator_trust.ValidatorTrust`),
so a snapshot taken after the validators changed loads offline with only the genesis as trust anchor.

The file is JSON: ``{"format": "trellis-verifier-snapshot/1", "networks": [{"network",
"genesis_hash", "confirmed_at", "validator_changes": [state proof…], "sections": [{"header",
"certificate", "records": [{"key", "value", "proof"}]}]}]}`` (``validator_changes`` may be left
out when there are none).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from did_registry.client import ANSWER_ERRORS, LedgerClient, LedgerUnavailable
from did_registry.errors import DidRegistryError
from did_registry.identity.timestamps import parse_timestamp
from did_registry.ledger.block import BlockHeader, CommitCertificate
from did_registry.ledger.proofs import StateProof
from did_registry.ledger.smt import MapProof
from did_registry.validator_trust import ValidatorTrust
from verifier.errors import ConfigurationError
from verifier.policy import NetworkTrust

if TYPE_CHECKING:
    from verifier.verifier import Verifier

__all__ = ["SNAPSHOT_FORMAT", "InvalidSnapshot", "save_snapshot", "load_snapshot"]

SNAPSHOT_FORMAT: Final = "trellis-verifier-snapshot/1"
"""The ``format`` member of a snapshot file."""
_BATCH: Final = 1000
_RETRIES: Final = 5
"""Rounds of proving again the batches left behind when the head moved on, before giving up."""


class InvalidSnapshot(ConfigurationError):
    """A snapshot file is malformed, or a header, certificate or proof in it does not check out."""


def _prove_sections(client: LedgerClient, keys: Sequence[str]) -> list[dict[str, Any]]:
    """``keys`` proven in batches, every batch against the same certified head."""
    batches = [list(keys[start : start + _BATCH]) for start in range(0, len(keys), _BATCH)]
    sections = [_prove_batch(client, batch) for batch in batches]
    for _ in range(_RETRIES):
        head = max((s["header"] for s in sections), key=lambda header: int(header["height"]))
        behind = [i for i, section in enumerate(sections) if section["header"] != head]
        if not behind:
            return sections
        for i in behind:
            sections[i] = _prove_batch(client, batches[i])
    raise LedgerUnavailable(f"the head moved on while proving {len(keys)} keys, {_RETRIES} times over")


def _prove_batch(client: LedgerClient, batch: list[str]) -> dict[str, Any]:
    errors: list[str] = []
    for node in client.nodes:
        try:
            response = client._http.post(node.rstrip("/") + "/proofs/state", json={"keys": batch})
            response.raise_for_status()
            return _check_section(response.json(), batch, client)
        except (*ANSWER_ERRORS, DidRegistryError) as exc:  # failing or lying (nested too deep): the next
            errors.append(f"{node}: {exc}")
    raise LedgerUnavailable("; ".join(errors))


def _check_section(data: Any, keys: list[str], client: LedgerClient) -> dict[str, Any]:
    header = BlockHeader.from_json(data["header"])
    certificate = data["certificate"]
    client.verify_header(header, None if certificate is None else CommitCertificate.from_json(certificate))
    records = [{"key": p["key"], "value": p["value"], "proof": p["proof"]} for p in data["proofs"]]
    if [r["key"] for r in records] != keys:
        raise ValueError("the answer does not prove the keys asked for")
    for record in records:
        StateProof(
            record["key"], record["value"], header, None, MapProof.from_json(record["proof"])
        ).verify_path()
    return {"header": header.to_json(), "certificate": certificate, "records": records}


def _check_loadable(
    trust: NetworkTrust, changes: list[dict[str, Any]], sections: list[dict[str, Any]]
) -> None:
    """Refuse to write a section :func:`load_snapshot` would refuse: its header must name the set that
    the genesis and the proven ``changes`` (what the snapshot carries) put in force at its height. A
    set the saver's client trusts out of band (``LedgerClient.trust_validators``) and no node proved a
    change to does not travel with the snapshot."""
    sets = ValidatorTrust(trust.genesis)
    sets.learn(ValidatorTrust.parse(changes))
    for section in sections:
        header = BlockHeader.from_json(section["header"])
        _, trusted = sets.at(header.height)
        if header.validators_hash != trusted:
            raise ConfigurationError(
                f"network {trust.network!r}: block {header.height}, the head the snapshot would prove its "
                f"records against, names validator set {header.validators_hash[:16]}…, which is trusted "
                "only out of band (no node proved the change to it): a verifier loading the snapshot "
                f"from the genesis would refuse it ({trusted[:16]}… is the set the proven changes put in "
                "force there); nothing was written"
            )


def save_snapshot(verifier: Verifier, path: str | Path) -> None:
    """Write a certified snapshot of every network's cache to ``path`` (atomically). Nothing is written
    when a network's head is certified by a set trusted only out of band (``ConfigurationError``): the
    file would not load."""
    networks = []
    for name, cache in verifier.caches.items():
        if cache.client is None:
            raise ConfigurationError(f"network {name!r} has no nodes: nothing can be proven afresh")
        confirmed_at = verifier.clock()
        keys = cache.keys() or ["network"]
        sections = _prove_sections(cache.client, keys)  # learns any set change up to the head first
        changes = cache.client.validator_changes()
        _check_loadable(verifier.networks[name], changes, sections)
        networks.append(
            {
                "network": name,
                "genesis_hash": verifier.networks[name].genesis.hash.hex(),
                "confirmed_at": confirmed_at,
                "validator_changes": changes,
                "sections": sections,
            }
        )
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps({"format": SNAPSHOT_FORMAT, "networks": networks}, separators=(",", ":")))
    os.replace(temporary, target)


def _verified_values(
    section: Any, header: BlockHeader, trust: NetworkTrust, sets: ValidatorTrust
) -> dict[str, Any]:
    if header.network != trust.network or header.height < 1:
        raise InvalidSnapshot(f"a header of the snapshot is not a certified block of {trust.network}")
    if section["certificate"] is None:
        raise InvalidSnapshot(f"block {header.height} of the snapshot has no certificate")
    certificate = CommitCertificate.from_json(section["certificate"])
    validators, trusted = sets.at(header.height)
    if header.validators_hash != trusted:
        raise InvalidSnapshot(
            f"block {header.height} of the snapshot names validator set {header.validators_hash[:16]}…, "
            f"not the one its proven validator changes put in force there ({trusted[:16]}…)"
        )
    certificate.verify(header, validators)
    values = {}
    for record in section["records"]:
        key = record["key"]
        if not isinstance(key, str):
            raise InvalidSnapshot("a record key is not a string")
        proof = StateProof(key, record["value"], header, certificate, MapProof.from_json(record["proof"]))
        values[key] = proof.verify_path()
    return values


def _verified_head(
    sections: Any, trust: NetworkTrust, sets: ValidatorTrust
) -> tuple[BlockHeader, dict[str, Any]]:
    """The one certified header every section is proven against, and the values proven."""
    if not isinstance(sections, list) or not sections:
        raise InvalidSnapshot(f"the snapshot of {trust.network} proves nothing against a certified block")
    headers = [BlockHeader.from_json(section["header"]) for section in sections]
    if any(header != headers[0] for header in headers):
        heights = sorted({header.height for header in headers})
        raise InvalidSnapshot(
            f"the sections of the snapshot of {trust.network} are proven against different blocks "
            f"(heights {heights}), not one certified head"
        )
    values: dict[str, Any] = {}
    for section, header in zip(sections, headers, strict=True):
        values.update(_verified_values(section, header, trust, sets))
    return headers[0], values


def _load_network(verifier: Verifier, item: Any, trust: NetworkTrust) -> None:
    if item["genesis_hash"] != trust.genesis.hash.hex():
        raise InvalidSnapshot(f"the snapshot of {trust.network} is of another genesis")
    confirmed_at = float(item["confirmed_at"])
    skew = verifier.policy.clock_skew
    if not math.isfinite(confirmed_at):
        raise InvalidSnapshot(f"the snapshot of {trust.network} has no confirmation time")
    if confirmed_at > verifier.clock() + skew:
        raise InvalidSnapshot(f"the snapshot of {trust.network} claims to be from the future")
    sets = ValidatorTrust(trust.genesis)
    changes = item.get("validator_changes", [])
    sets.learn(ValidatorTrust.parse(changes))
    header, values = _verified_head(item["sections"], trust, sets)
    certified = parse_timestamp(header.time).timestamp() + skew  # no fresher than the head it proves
    cache = verifier.caches[trust.network]
    if cache.client is not None:
        cache.client.learn_validator_changes(changes)
    cache.load(values, header.height)
    cache.confirm(
        header.height, at=min(confirmed_at, certified), time=certified - skew, base=header.hash.hex()
    )


def _check_once_each(items: Any) -> None:
    """Refuse a snapshot that names a network more than once, before anything is loaded: each item
    passes the splice check on its own, but an older one loaded after a newer one would put back
    what the newer one's blocks changed (a revocation) at the newer height."""
    if not isinstance(items, list):
        raise InvalidSnapshot("the networks of the snapshot are not a list")
    seen: set[str] = set()
    for item in items:
        name = item["network"]
        if not isinstance(name, str):
            raise InvalidSnapshot(f"a network of the snapshot is named {name!r}, not a string")
        if name in seen:
            raise InvalidSnapshot(
                f"the snapshot names network {name!r} more than once: one network, one certified head"
            )
        seen.add(name)


def load_snapshot(
    cls: type[Verifier], path: str | Path, networks: Sequence[NetworkTrust], **options: Any
) -> Verifier:
    """A verifier of ``cls`` built with ``networks`` and ``options``, its caches filled from ``path``."""
    follow = options.pop("follow", True)
    verifier = cls(networks, follow=False, **options)
    try:
        data = json.loads(Path(path).read_text())
        if data.get("format") != SNAPSHOT_FORMAT:
            raise InvalidSnapshot(f"not a {SNAPSHOT_FORMAT} file")
        _check_once_each(data["networks"])
        for item in data["networks"]:
            trust = verifier.networks.get(item["network"])
            if trust is not None:  # else a network this verifier does not trust any more
                _load_network(verifier, item, trust)
    except InvalidSnapshot:
        verifier.close()
        raise
    except (OSError, ValueError, KeyError, TypeError, RecursionError, DidRegistryError) as exc:
        verifier.close()
        raise InvalidSnapshot(f"snapshot {path}: {exc}") from None
    if follow:
        for cache in verifier.caches.values():
            cache.start()
    return verifier
