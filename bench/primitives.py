"""Benchmark of the identity primitives: credential issue/verify and status list round trips.

``python -m bench.primitives [--quick]`` prints one JSON object with ``raw_verify_per_s`` (the
yardstick, this run), ``vc_issue_per_s``, ``vc_verify_per_s`` and ``status_list_1m_roundtrip_ms``.
Targets: ``vc_verify_per_s >= 0.5 * raw_verify_per_s``; ``status_list_1m_roundtrip_ms <= 10``.
"""

from __future__ import annotations

import itertools
import random
import time
from datetime import UTC, datetime, timedelta

from bench._common import parse_args, pin_one_core, rate, raw_verify_per_s, report
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.status_list import BitstringStatusList
from wallet.credential import build_credential, issue_credential, verify_credential
from wallet.holder import did_key_identity
from wallet.resolver import did_key_lookup

_VERIFY_POOL = 8192


def main() -> None:
    """Run the benchmark and print its JSON."""
    args = parse_args(__doc__ or "")
    pin_one_core()
    seconds = 0.6 if args.quick else 3.0

    raw = raw_verify_per_s(seconds)

    issuer_key, device_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    issuer, method = did_key_identity(issuer_key)
    device, _ = did_key_identity(device_key)
    now = datetime.now(UTC)
    unsigned = build_credential(
        issuer=issuer,
        subject={"id": device, "model": "TH-1", "firmware": "1.4.2", "serial": "SN-000042"},
        types=["DeviceCredential"],
        credential_id="urn:uuid:1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed",
        valid_from=now,
        valid_until=now + timedelta(days=365),
        status=[
            {
                "id": f"https://fleet.example/status/1-{purpose}#94567",
                "type": "BitstringStatusListEntry",
                "statusPurpose": purpose,
                "statusListIndex": "94567",
                "statusListCredential": f"https://fleet.example/status/1-{purpose}",
            }
            for purpose in ("revocation", "suspension")
        ],
    )
    issue = rate(lambda: issue_credential(unsigned, issuer_key, method, created=now), seconds)
    # Distinct credentials, cycled: more than the verifier's memo of verified proofs holds (4,096),
    # so every verification checks its signature (a repeated credential would be remembered).
    pool = [
        issue_credential({**unsigned, "id": f"urn:uuid:bench-{i}"}, issuer_key, method, created=now)
        for i in range(_VERIFY_POOL)
    ]
    lookup = did_key_lookup()
    turn = itertools.cycle(pool)
    verify = rate(lambda: verify_credential(next(turn), lookup, now=now), seconds)

    entries = 1 << 20
    status_list = BitstringStatusList(entries)
    status_list.set_many(random.Random(7).sample(range(entries), entries // 100))  # 1 % revoked
    rounds = 20 if args.quick else 100
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        decoded = BitstringStatusList.decode(status_list.encode())
        best = min(best, time.perf_counter() - start)
    assert decoded == status_list
    roundtrip_ms = best * 1000

    report(
        "primitives",
        {
            "raw_verify_per_s": raw,
            "vc_issue_per_s": issue,
            "vc_verify_per_s": verify,
            "vc_verify_ratio": verify / raw,
            "status_list_1m_roundtrip_ms": roundtrip_ms,
            "status_list_1m_bits_set": entries // 100,
        },
        {
            "vc_verify_per_s >= 0.5 x raw_verify_per_s": verify >= 0.5 * raw,
            "status_list_1m_roundtrip_ms <= 10": roundtrip_ms <= 10,
        },
        args.quick,
    )


if __name__ == "__main__":
    main()
