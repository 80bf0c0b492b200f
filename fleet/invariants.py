"""The invariants a simulation checks at its end, each with a verdict and a detail that says why.

1. *No acknowledged write lost*: every transaction the ledger acknowledged to the simulation is
   committed on every validator, at the same height; every acknowledged status change and
   quarantine is in force (or lifted, for a reinstatement) in every validator's state.
2. *Equal state roots*: every validator ends at the same height with the same state root.
3. *Changes refused from their block on*: no service let in a revoked, suspended or quarantined
   device once its verifier had applied the block of the change, and every service ended up
   refusing each such device (measured by the probes).
4. *No legitimate device refused*: no service refused a device that had no change pending. (A
   device that has just rotated its key may be refused the new key as ``key_not_authorized`` or
   ``ledger_unavailable`` only by a verifier that has not applied the rotation's block and could
   not read it: one cut off from the ledger.)
5. *Replays refused*: no replayed request was let in.

``wrong_decisions`` counts the decisions that break 3, 4 or 5; ``lost_writes`` those of 1.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from did_registry.client import LedgerClient
from did_registry.identity.status_list import BitstringStatusList
from fleet.devices import SimulatedDevice, Standing
from fleet.operator import Acknowledged
from fleet.traffic import RENEWAL_REASONS, Decision, ProbeResult

__all__ = ["Verdict", "Judgement", "judge_decisions", "check_writes", "check_roots"]

_CHUNK = 500
_ROTATION_REFUSALS = frozenset({"key_not_authorized", "ledger_unavailable"})
"""How a verifier that has not applied a key rotation, and cannot read it, refuses the new key."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One invariant: its name, whether it holds, and a detail."""

    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        """The report's form."""
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Judgement:
    """The decisions judged: the verdicts of invariants 3 to 5 and the count of wrong decisions."""

    verdicts: list[Verdict]
    wrong_decisions: int
    wrong: list[Decision]
    """The wrong decisions themselves."""


def judge_decisions(decisions: Sequence[Decision], probes: Sequence[ProbeResult]) -> Judgement:
    """Judge every decision against its device's ground truth (see the module docstring)."""
    admitted_barred: list[Decision] = []
    refused_legitimate: list[Decision] = []
    replays_admitted: list[Decision] = []
    for d in decisions:
        if d.flow == "replay":
            if d.admitted:
                replays_admitted.append(d)
            continue
        view = d.view_height if d.view_height >= 0 else None
        standing = d.device.standing(view, d.ended)
        if d.admitted and standing is Standing.REFUSE:
            admitted_barred.append(d)
        elif (
            not d.admitted
            and standing is Standing.ADMIT
            and d.reason not in RENEWAL_REASONS
            and not (d.reason in _ROTATION_REFUSALS and d.device.rotating(view, d.ended))
        ):
            refused_legitimate.append(d)
    never = [p for p in probes if p.ms is None]
    reasons = Counter(d.reason for d in refused_legitimate)
    changed = {p.did for p in probes}
    verdicts = [
        Verdict(
            "changes refused from their block on",
            not admitted_barred and not never,
            f"{len(admitted_barred)} admissions of a device barred at the verifier's height; "
            f"{len(probes) - len(never)} of {len(probes)} probes of {len(changed)} changed devices refused"
            + (
                f"; never refused: {', '.join(sorted({p.service + ' ' + p.did for p in never})[:5])}"
                if never
                else ""
            ),
        ),
        Verdict(
            "no legitimate device refused",
            not refused_legitimate,
            f"{len(refused_legitimate)} of {sum(1 for d in decisions if not d.admitted)} refusals were of a "
            "device with no change pending"
            + (f" (reasons: {dict(reasons)}; the first: {_why(refused_legitimate[0])})" if reasons else ""),
        ),
        Verdict(
            "replays refused",
            not replays_admitted,
            f"{sum(1 for d in decisions if d.flow == 'replay')} replayed requests, {len(replays_admitted)} let in",
        ),
    ]
    wrong = admitted_barred + refused_legitimate + replays_admitted
    return Judgement(verdicts, len(wrong), wrong)


def _why(decision: Decision) -> str:
    """Which service refused which device, why and when (the verifier's own words)."""
    return (
        f"{decision.service} refused {decision.device.did} ({decision.flow}) at view height "
        f"{decision.view_height}: {decision.reason}: {decision.detail or 'no detail'}"
    )


def check_writes(
    nodes: Mapping[str, str],
    genesis: Mapping[str, Any],
    acknowledged: Sequence[Acknowledged],
    devices: Sequence[SimulatedDevice],
) -> tuple[Verdict, int]:
    """Invariant 1 on each of ``nodes`` (id -> URL): the verdict and the number of lost writes."""
    lost: set[str] = set()
    notes: list[str] = []
    ids = [a.txn_id for a in acknowledged]
    heights: dict[str, set[int]] = {}
    expected = _expected_status(devices)
    for node_id, url in nodes.items():
        with LedgerClient([url], dict(genesis)) as client:
            for start in range(0, len(ids), _CHUNK):
                for status in client.wait(ids[start : start + _CHUNK], timeout=5.0):
                    if status.get("status") != "committed":
                        lost.add(status["id"])
                        notes.append(f"{node_id} lacks {status['id'][:16]}…")
                    else:
                        heights.setdefault(status["id"], set()).add(int(status["height"]))
            lost |= _check_state(client, node_id, expected, notes)
    split = [txn for txn, at in heights.items() if len(at) > 1]
    lost |= set(split)
    notes += [f"{txn[:16]}… committed at heights {sorted(heights[txn])}" for txn in split[:5]]
    detail = (
        f"{len(ids)} acknowledged transactions and {len(expected)} status bits / quarantines checked on "
        f"{len(nodes)} validators; {len(lost)} lost" + (f": {'; '.join(notes[:5])}" if notes else "")
    )
    return Verdict("no acknowledged write lost", not lost, detail), len(lost)


def _expected_status(devices: Sequence[SimulatedDevice]) -> dict[str, Any]:
    """State keys whose value the acknowledged changes fix: ``(key, index) -> bit`` and quarantines."""
    expected: dict[str, Any] = {}
    for device in devices:
        suspended: bool | None = None
        for change in device.changes:
            if change.height is None:
                continue
            if change.kind == "quarantine":
                expected[f"quarantine:{device.did}"] = device.did
                continue
            purpose = "revocation" if change.kind == "revocation" else "suspension"
            entry = _status_entry(device.credential, purpose)
            if entry is None:
                continue
            if purpose == "revocation":
                expected[f"{entry[0]}#{entry[1]}"] = 1
            else:
                suspended = change.kind == "suspension"
                expected[f"{entry[0]}#{entry[1]}"] = 1 if suspended else 0
    return expected


def _status_entry(credential: Mapping[str, Any], purpose: str) -> tuple[str, int] | None:
    entries = credential.get("credentialStatus", [])
    entries = [entries] if isinstance(entries, Mapping) else entries
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("statusPurpose") == purpose:
            url = str(entry["statusListCredential"])
            issuer_and_list = url.split("/status-lists/", 1)[1].removesuffix("/credential")
            issuer, _, name = issuer_and_list.rpartition("/")
            return f"status:{issuer}:{name}", int(entry["statusListIndex"])
    return None


def _check_state(
    client: LedgerClient, node_id: str, expected: Mapping[str, Any], notes: list[str]
) -> set[str]:
    lost: set[str] = set()
    keys = sorted({k.partition("#")[0] for k in expected})
    values: dict[str, Any] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        found, _ = client.prove_many(chunk)
        values.update(zip(chunk, found, strict=True))
    lists = {
        key: BitstringStatusList.from_bytes(base64.urlsafe_b64decode(value["bits"]))
        for key, value in values.items()
        if key.startswith("status:") and isinstance(value, Mapping)
    }
    for key, want in expected.items():
        if key.startswith("quarantine:"):
            if values.get(key) is None:
                lost.add(key)
                notes.append(f"{node_id}: {key} missing")
            continue
        list_key, _, index = key.partition("#")
        bits = lists.get(list_key)
        if bits is None or bits.get(int(index)) != want:
            lost.add(key)
            notes.append(f"{node_id}: {key} is not {want}")
    return lost


def check_roots(heads: Mapping[str, Mapping[str, Any]]) -> Verdict:
    """Invariant 2 on the validators' final ``{"height", "state_root"}``."""
    distinct = {(int(h["height"]), str(h["state_root"])) for h in heads.values()}
    detail = ", ".join(f"{n} {h['height']} {str(h['state_root'])[:12]}" for n, h in sorted(heads.items()))
    return Verdict("equal state roots", len(distinct) == 1 and len(heads) > 0, detail)
