"""Random assignment of status list indices that never hands one index out twice.

Bitstring Status List v1.0 §6 (privacy considerations) asks issuers to assign indices at random, so
that a credential's index tells nothing about when it was issued or which credentials were issued
together. Trellis keeps a counter per list and maps it through a keyed pseudo-random permutation of
``[0, length)``: a four-round Feistel network over the next power of two with HMAC-SHA-256 as its
round function, cycle-walking until the value falls inside the list. Being a bijection, it gives
every counter value a different index; persisting the counter is all the state needed.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["permuted_index"]

_ROUNDS = 4


def _round(key: bytes, round_number: int, half: int, bits: int) -> int:
    digest = hmac.digest(key, bytes((round_number,)) + half.to_bytes(8, "big"), hashlib.sha256)
    return int.from_bytes(digest[:8], "big") & ((1 << bits) - 1)


def _feistel(key: bytes, value: int, half_bits: int) -> int:
    mask = (1 << half_bits) - 1
    left, right = value >> half_bits, value & mask
    for round_number in range(_ROUNDS):
        left, right = right, left ^ _round(key, round_number, right, half_bits)
    return (left << half_bits) | right


def permuted_index(key: bytes, counter: int, length: int) -> int:
    """Return the index for the ``counter``-th allocation in a list of ``length`` entries."""
    if not 0 <= counter < length:
        raise ValueError(f"counter {counter} outside a list of {length} entries")
    half_bits = max(1, ((length - 1).bit_length() + 1) // 2)
    value = counter
    while True:  # cycle-walking: at most a few steps, the domain is < 4 x length
        value = _feistel(key, value, half_bits)
        if value < length:
            return value
