"""The bitstring of W3C Bitstring Status List v1.0 (Recommendation, 15 May 2025).

Implements §2.2 ``encodedList`` (multibase base64url without padding of the GZIP [RFC 1952]
bitstring), §3.3 Bitstring Generation, §3.4 Bitstring Expansion, the length check of §3.2
(``minimumNumberOfEntries`` = 131,072) and the bit order of §7.1 Bitstring Encoding: index 0 is the
most significant bit of the first byte, index ``length - 1`` the least significant bit of the last.
An entry is ``statusSize`` bits wide (§2.1) and entry ``i`` starts at bit ``i * statusSize``.

Decoding treats its input as hostile: a wrong multibase prefix, bad base64url, data that is not
GZIP, a corrupt or truncated stream (zlib checks the CRC-32 and length trailer), bytes after the
stream, a bitstring that is not whole entries, too short, not the expected size, or larger than a
cap (the decompression-bomb guard, checked while inflating) all raise
:class:`~did_registry.errors.InvalidStatusList`; an index outside the list raises
:class:`~did_registry.errors.StatusIndexError`. Encoding uses zlib's run-length strategy (``Z_RLE``),
which on sparse lists is both the fastest and among the smallest; its output is deterministic for
a given zlib (mtime 0), but GZIP bytes are not canonical across implementations: compare bitstrings,
never ``encodedList`` strings.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from typing import Final

from did_registry.errors import InvalidStatusList, StatusIndexError
from did_registry.identity import multibase

__all__ = [
    "MIN_LIST_LENGTH",
    "DEFAULT_LIST_LENGTH",
    "MAX_STATUS_SIZE",
    "MAX_DECOMPRESSED_SIZE",
    "BitstringStatusList",
]

MIN_LIST_LENGTH: Final = 131_072
"""§3.2 ``minimumNumberOfEntries``: the herd-privacy minimum (16 KB of 1-bit entries)."""

DEFAULT_LIST_LENGTH: Final = MIN_LIST_LENGTH
"""Entries in a new list unless told otherwise (§1.1: the default size is 131,072 entries)."""

MAX_STATUS_SIZE: Final = 8
"""Widest ``statusSize`` supported (the spec sets no maximum; 8 bits means 256 status messages)."""

MAX_DECOMPRESSED_SIZE: Final = 16 * 1024 * 1024
"""Default cap, in bytes, on a decompressed bitstring: 134,217,728 one-bit entries."""

_GZIP_MAGIC: Final = b"\x1f\x8b"
_GZIP_WBITS: Final = 31  # 16 + 15: zlib reads and writes a GZIP wrapper, and nothing else
_NONZERO_BYTE: Final = re.compile(rb"[^\x00]")
_BIT_MASKS: Final = tuple(0x80 >> offset for offset in range(8))  # index 0 is the MSB (§7.1)
_SET_BIT_OFFSETS: Final = tuple(
    tuple(offset for offset in range(8) if byte & _BIT_MASKS[offset]) for byte in range(256)
)


def _check_status_size(status_size: object) -> int:
    if type(status_size) is not int or not 1 <= status_size <= MAX_STATUS_SIZE:
        raise InvalidStatusList(
            f"statusSize must be an integer from 1 to {MAX_STATUS_SIZE}, got {status_size!r}"
        )
    return status_size


def _check_positive(value: object, name: str) -> int:
    if type(value) is not int or value < 1:
        raise InvalidStatusList(f"{name} must be a positive integer, got {value!r}")
    return value


def _max_encoded_chars(cap: int) -> int:
    # Deflate expands incompressible data by well under 0.1 %; allow that, a GZIP header with
    # optional fields, and base64's 4/3.
    return (cap + cap // 1024 + 70_000) * 4 // 3 + 2


def _unwrap(encoded_list: object, cap: int) -> bytes:
    """Multibase-decode an ``encodedList`` into the GZIP bytes it carries."""
    if not isinstance(encoded_list, str):
        raise InvalidStatusList(f"encodedList must be a string, got {type(encoded_list).__name__}")
    if not encoded_list.startswith(multibase.BASE64URL):
        raise InvalidStatusList("encodedList must be multibase base64url, which starts with 'u'")
    if len(encoded_list) > _max_encoded_chars(cap):
        raise InvalidStatusList(f"encodedList is too long for a bitstring of at most {cap} bytes")
    try:
        return multibase.decode(encoded_list)
    except multibase.MultibaseError as exc:
        raise InvalidStatusList(f"encodedList is not base64url: {exc}") from exc


def _gunzip(data: bytes, cap: int) -> bytes:
    """Inflate exactly one GZIP member of at most ``cap`` bytes, checking its trailer."""
    if data[:2] != _GZIP_MAGIC:
        raise InvalidStatusList("encodedList is not GZIP data (no 1f 8b magic)")
    inflater = zlib.decompressobj(_GZIP_WBITS)
    try:
        raw = inflater.decompress(data, cap + 1)
    except zlib.error as exc:
        raise InvalidStatusList(f"encodedList holds corrupt GZIP data: {exc}") from exc
    if len(raw) > cap:
        raise InvalidStatusList(f"bitstring inflates beyond the cap of {cap} bytes")
    if not inflater.eof:
        raise InvalidStatusList("encodedList holds truncated GZIP data (stream or trailer cut)")
    if inflater.unused_data:
        raise InvalidStatusList(f"{len(inflater.unused_data)} bytes follow the GZIP stream")
    return raw


class BitstringStatusList:
    """A status list: ``len(list)`` entries of ``status_size`` bits, index 0 at the first byte's MSB."""

    __slots__ = ("_bits", "_length", "_size")

    _bits: bytearray
    _length: int
    _size: int

    def __init__(self, length: int = DEFAULT_LIST_LENGTH, *, status_size: int = 1) -> None:
        _check_status_size(status_size)
        if type(length) is not int or length < MIN_LIST_LENGTH:
            raise InvalidStatusList(
                f"a status list has at least {MIN_LIST_LENGTH} entries (§3.2), got {length!r}"
            )
        if length * status_size % 8:
            raise InvalidStatusList(f"{length} entries of {status_size} bits do not fill whole bytes")
        if length * status_size // 8 > MAX_DECOMPRESSED_SIZE:
            raise InvalidStatusList(f"a bitstring is at most {MAX_DECOMPRESSED_SIZE} bytes")
        self._bits = bytearray(length * status_size // 8)
        self._length = length
        self._size = status_size

    @classmethod
    def _wrap(cls, bits: bytearray, status_size: int, min_length: int) -> BitstringStatusList:
        if len(bits) * 8 % status_size:
            raise InvalidStatusList(
                f"a bitstring of {len(bits)} bytes is not whole {status_size}-bit entries"
            )
        length = len(bits) * 8 // status_size
        if length < min_length:
            raise InvalidStatusList(
                f"status list has {length} entries, fewer than the minimum {min_length} "
                "(STATUS_LIST_LENGTH_ERROR, §3.2)"
            )
        self = cls.__new__(cls)
        self._bits, self._length, self._size = bits, length, status_size
        return self

    @classmethod
    def from_bytes(
        cls, bitstring: bytes, *, status_size: int = 1, min_length: int = MIN_LIST_LENGTH
    ) -> BitstringStatusList:
        """Wrap an uncompressed bitstring (a copy of it), e.g. one read back from storage."""
        if not isinstance(bitstring, bytes | bytearray | memoryview):
            raise InvalidStatusList(f"a bitstring is bytes, got {type(bitstring).__name__}")
        _check_status_size(status_size)
        return cls._wrap(bytearray(bitstring), status_size, _check_positive(min_length, "min_length"))

    @classmethod
    def decode(
        cls,
        encoded_list: str,
        *,
        status_size: int = 1,
        length: int | None = None,
        min_length: int = MIN_LIST_LENGTH,
        max_size: int = MAX_DECOMPRESSED_SIZE,
    ) -> BitstringStatusList:
        """Expand an ``encodedList`` (§3.4) and check its size (§3.2).

        ``length``, when known (e.g. from the ledger), is the exact number of entries expected and
        then also the inflation cap; otherwise at most ``max_size`` bytes are inflated.
        ``min_length`` may be lowered only where an ecosystem specification says so (§3.2 step 2).
        """
        _check_status_size(status_size)
        _check_positive(min_length, "min_length")
        cap = _check_positive(max_size, "max_size")
        if length is not None:
            if _check_positive(length, "length") * status_size % 8:
                raise InvalidStatusList(f"{length} entries of {status_size} bits are not whole bytes")
            cap = length * status_size // 8
        bits = bytearray(_gunzip(_unwrap(encoded_list, cap), cap))
        if length is not None and len(bits) * 8 != length * status_size:
            raise InvalidStatusList(
                f"bitstring holds {len(bits) * 8} bits, expected {length} entries of {status_size}"
            )
        return cls._wrap(bits, status_size, min_length)

    def encode(self) -> str:
        """Return the ``encodedList`` value (§3.3): ``u`` + base64url(GZIP(bitstring))."""
        deflater = zlib.compressobj(9, zlib.DEFLATED, _GZIP_WBITS, 9, zlib.Z_RLE)
        gzipped = deflater.compress(self._bits) + deflater.flush()
        return multibase.encode(gzipped, multibase.BASE64URL)

    def to_bytes(self) -> bytes:
        """Return the uncompressed bitstring."""
        return bytes(self._bits)

    @property
    def status_size(self) -> int:
        """Bits per entry (``statusSize``)."""
        return self._size

    def __len__(self) -> int:
        return self._length

    def _check_index(self, index: object) -> int:
        if type(index) is not int:
            raise StatusIndexError(f"a status list index is an int, got {type(index).__name__}")
        if not 0 <= index < self._length:
            raise StatusIndexError(f"index {index} is outside the list of {self._length} entries")
        return index

    def _check_value(self, value: object) -> int:
        if type(value) is not int or not 0 <= value < 1 << self._size:
            raise InvalidStatusList(f"a {self._size}-bit status is 0 to {(1 << self._size) - 1}")
        return value

    def _checked_indices(self, indices: Iterable[int]) -> list[int]:
        """All of ``indices``, checked before any is used, so a bulk update is all or nothing."""
        checked = list(indices)
        if not checked:
            return checked
        kinds = set(map(type, checked))
        if kinds != {int}:
            bad = next(k for k in kinds if k is not int)
            raise StatusIndexError(f"a status list index is an int, got {bad.__name__}")
        low, high = min(checked), max(checked)
        self._check_index(low)
        self._check_index(high)
        return checked

    def _span(self, index: int) -> tuple[int, int, int]:
        start = index * self._size
        first, end = start >> 3, (start + self._size + 7) >> 3
        return first, end, end * 8 - start - self._size

    def _read(self, index: int) -> int:
        first, end, shift = self._span(index)
        chunk = int.from_bytes(self._bits[first:end], "big")
        return (chunk >> shift) & ((1 << self._size) - 1)

    def _write(self, index: int, value: int) -> None:
        first, end, shift = self._span(index)
        chunk = int.from_bytes(self._bits[first:end], "big")
        chunk = chunk & ~(((1 << self._size) - 1) << shift) | value << shift
        self._bits[first:end] = chunk.to_bytes(end - first, "big")

    def get(self, index: int) -> int:
        """Return the status of entry ``index``; with ``statusSize`` 1, 1 means set (revoked, ...)."""
        index = self._check_index(index)
        if self._size == 1:
            return 1 if self._bits[index >> 3] & _BIT_MASKS[index & 7] else 0
        return self._read(index)

    def set(self, index: int, value: int = 1) -> None:
        """Set entry ``index`` to ``value`` (1 by default)."""
        self.set_many((index,), value)

    def clear(self, index: int) -> None:
        """Reset entry ``index`` to 0."""
        self.set_many((index,), 0)

    def set_many(self, indices: Iterable[int], value: int = 1) -> None:
        """Set every entry in ``indices`` to ``value``; all indices are checked before any change."""
        value = self._check_value(value)
        checked = self._checked_indices(indices)
        bits, masks = self._bits, _BIT_MASKS
        if self._size == 1 and value:
            for i in checked:
                bits[i >> 3] |= masks[i & 7]
        elif self._size == 1:
            for i in checked:
                bits[i >> 3] &= ~masks[i & 7]
        else:
            for i in checked:
                self._write(i, value)

    def clear_many(self, indices: Iterable[int]) -> None:
        """Reset every entry in ``indices`` to 0; all indices are checked before any change."""
        self.set_many(indices, 0)

    def nonzero(self) -> list[int]:
        """Return, ascending, the indices whose status is not 0 (cost grows with their number)."""
        found: list[int] = []
        bits, size, append = self._bits, self._size, found.append
        for match in _NONZERO_BYTE.finditer(bits):
            first = match.start() * 8
            if size == 1:
                for offset in _SET_BIT_OFFSETS[bits[match.start()]]:
                    append(first + offset)
                continue
            for index in range(first // size, (first + 7) // size + 1):
                if (not found or found[-1] < index) and self._read(index):
                    append(index)
        return found

    def count_nonzero(self) -> int:
        """Return how many entries have a status other than 0."""
        if self._size == 1:
            return int.from_bytes(self._bits, "big").bit_count()
        return len(self.nonzero())

    def copy(self) -> BitstringStatusList:
        """Return an independent copy."""
        return self._wrap(bytearray(self._bits), self._size, min(self._length, MIN_LIST_LENGTH))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BitstringStatusList):
            return NotImplemented
        return self._size == other._size and self._bits == other._bits

    def __repr__(self) -> str:
        return (
            f"BitstringStatusList(length={self._length}, status_size={self._size}, "
            f"nonzero={self.count_nonzero()})"
        )
