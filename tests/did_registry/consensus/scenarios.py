"""Scenarios for the simulator: the validator set, the faults and the network trouble of one run.

:func:`random_scenario` draws a scenario from a seed. At most ``f`` validators are faulty: byzantine
(PBFT only) or crashing. A crashed validator restarts before the heal, or never.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.validators import Validator, ValidatorSet
from tests.did_registry.consensus.byzantine import BEHAVIOURS

__all__ = ["Scenario", "make_validators", "random_scenario"]


def make_validators(rng: random.Random, n: int) -> tuple[ValidatorSet, dict[str, Ed25519PrivateKey]]:
    """``n`` validators ``v0``… with keys drawn from ``rng``."""
    keys = {f"v{i}": Ed25519PrivateKey(rng.randbytes(32)) for i in range(n)}
    members = tuple(
        Validator(v, encode_ed25519_public_key(k.public_key), f"127.0.0.1:{7000 + i}")
        for i, (v, k) in enumerate(keys.items())
    )
    return ValidatorSet(members), keys


@dataclass(frozen=True)
class Scenario:
    """What happens in one simulated run."""

    engine: str
    n: int
    byzantine: tuple[tuple[str, frozenset[str]], ...] = ()
    crashes: tuple[tuple[str, float, float | None], ...] = ()  # (node, at, restart at or None)
    partitions: tuple[tuple[float, float, frozenset[str]], ...] = ()  # (from, until, one side)
    requests: int = 10
    chaos: float = 3.0
    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.02
    slow: float = 0.0
    outsider: bool = False
    bound: float = 60.0
    censored: tuple[bytes, ...] = ()  # the requests byzantine validators with "censor" never take

    def describe(self) -> str:
        """A one-line summary for failure messages."""
        byz = ",".join(f"{v}:{'+'.join(sorted(b))}" for v, b in self.byzantine) or "none"
        return (
            f"{self.engine} n={self.n} byzantine={byz} crashes={len(self.crashes)} partitions={len(self.partitions)} "
            f"drop={self.drop} dup={self.duplicate} delay<={self.delay}"
        )


def random_scenario(seed: int, engine: str) -> Scenario:
    """The scenario of ``seed``: sizes, faults and network trouble, all drawn from the seed."""
    rng = random.Random(f"scenario/{engine}/{seed}")
    n = {"solo": [1], "round_robin": [3, 4, 4, 5, 7], "pbft": [4, 4, 4, 5, 7]}[engine][
        rng.randrange(5) if engine != "solo" else 0
    ]
    f = (n - 1) // 3
    ids = [f"v{i}" for i in range(n)]
    chaos = rng.uniform(1.0, 4.0)
    faulty = rng.sample(ids, rng.randint(0, f))
    byz_count = rng.randint(0, len(faulty)) if engine == "pbft" else 0
    # censoring is drawn apart, so that adding it left the other draws of every seed as they were
    censoring = random.Random(f"censor/{engine}/{seed}")
    byzantine = tuple(
        (
            v,
            (
                frozenset(b for b in BEHAVIOURS if b != "censor" and rng.random() < 0.5)
                or frozenset({"equivocate"})
            )
            | (frozenset({"censor"}) if censoring.random() < 0.3 else frozenset()),
        )
        for v in sorted(faulty[:byz_count])
    )
    crashes = []
    for v in sorted(faulty[byz_count:]):
        at = rng.uniform(0.0, chaos * 0.8)
        crashes.append((v, at, rng.uniform(at, chaos) if rng.random() < 0.7 else None))
    partitions = []
    for _ in range(rng.choice([0, 0, 1, 2]) if n > 1 else 0):
        start = rng.uniform(0, chaos)
        side = frozenset(rng.sample(ids, rng.randint(1, n - 1)))
        partitions.append((start, rng.uniform(start, chaos), side))
    return Scenario(
        engine=engine,
        n=n,
        byzantine=byzantine,
        crashes=tuple(crashes),
        partitions=tuple(partitions),
        requests=rng.randint(3, 25),
        chaos=chaos,
        drop=rng.choice([0.0, 0.0, 0.02, 0.1, 0.3]),
        duplicate=rng.choice([0.0, 0.05, 0.2]),
        delay=rng.choice([0.002, 0.02, 0.1]),
        slow=rng.choice([0.0, 0.05]),
        outsider=rng.random() < 0.3,
        censored=(b"r-%d-0" % seed,) if any("censor" in b for _, b in byzantine) else (),
    )
