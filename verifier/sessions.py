"""Sessions: after one full authentication, the device's next requests cost a MAC check.

:func:`open_session` agrees a fresh 32-byte MAC key with the device: the verifier makes an ephemeral
X25519 key pair, and both sides derive the key with :func:`wallet.session_keys.session_key` (HKDF-SHA256
over the X25519 shared secret, bound to the session id) from their own private key and the other's
public key. The device's public key is its DID document's ``keyAgreement`` key; the verifier's goes to
the device in the offer, as a Multikey, with the session id and its expiry.

A :class:`SessionStore` holds live sessions: :class:`MemorySessionStore` for one process,
:class:`RedisSessionStore` to share them between the processes of a service. ``end_device`` ends every
session of a device at once, for when it is revoked, suspended, quarantined or rotates its key.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from did_registry.identity.crypto import X25519PrivateKey, X25519PublicKey, random_bytes
from did_registry.identity.multikey import encode_x25519_public_key
from did_registry.identity.timestamps import format_timestamp
from verifier.errors import ConfigurationError, StoreUnavailable
from verifier.replay import Clock, _redis_client, _redis_errors, _to_milliseconds
from wallet.session_keys import SESSION_KEY_SIZE, session_key

if TYPE_CHECKING:
    import redis

__all__ = [
    "SESSION_ID_SIZE",
    "Session",
    "open_session",
    "SessionStore",
    "MemorySessionStore",
    "RedisSessionStore",
]

SESSION_ID_SIZE = 16
"""Random bytes in a session id (written as base64url without padding: 22 characters)."""
_END_DEVICE_ATTEMPTS = 100  # optimistic-lock retries when sessions of the same device are opened meanwhile


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """A device's session after one full authentication.

    ``key`` is the secret MAC key: :meth:`to_json` writes it out (base64url) and :class:`RedisSessionStore`
    keeps it as is, unencrypted, so a Redis holding sessions belongs on a trusted network (anyone who
    reads it can act as the device until the session expires). It is left out of ``repr``.
    """

    id: str
    """Random session id: 16 bytes, base64url without padding."""
    did: str
    """The device's DID."""
    key: bytes = field(repr=False)
    """The 32-byte MAC key agreed with the device (secret)."""
    key_id: str
    """The verification method (DID URL) the device authenticated with."""
    audience: str
    """The audience (domain) the session was opened for."""
    created: float
    """When the session was opened, Unix seconds."""
    expires_at: float
    """When it ends, Unix seconds."""
    credential_id: str | None = None
    """The credential the device presented, if it had an id."""
    height: int = 0
    """The ledger height at which the full check was valid."""
    status: tuple[tuple[str, str, int], ...] = ()
    """The ``(issuer, list, index)`` status entries of the credential: any verifier process serving
    the session checks these bits in its own cache on every request, so revocation or suspension
    ends the session everywhere within a block."""
    proof_method: str | None = None
    """The verification method (a key of the issuer) of the credential's proof. Like the status bits,
    any process serving the session checks that it is still the issuer's assertion key ``proof_key``,
    that the issuer is not deactivated, and that it is still accredited for one of ``accredited_for``."""
    proof_key: bytes = field(default=b"", repr=False)
    """The issuer's public key that verified the credential's proof (public, but left out of ``repr``
    with the MAC key so that no key shows there)."""
    accredited_for: tuple[str, ...] = ()
    """The credential's types the verifier's policy accepted."""

    def __post_init__(self) -> None:
        if len(self.key) != SESSION_KEY_SIZE:
            raise ValueError(f"a session key is {SESSION_KEY_SIZE} bytes, got {len(self.key)}")

    def to_json(self) -> bytes:
        """The session as compact JSON (UTF-8), the key in base64url: secret, store it only where trusted."""
        record: dict[str, Any] = {
            "id": self.id,
            "did": self.did,
            "key": _b64url(self.key),
            "key_id": self.key_id,
            "audience": self.audience,
            "created": self.created,
            "expires_at": self.expires_at,
            "credential_id": self.credential_id,
            "height": self.height,
            "status": [list(ref) for ref in self.status],
            "proof_method": self.proof_method,
            "proof_key": _b64url(self.proof_key),
            "accredited_for": list(self.accredited_for),
        }
        return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Session:
        """Read what :meth:`to_json` wrote; raise ValueError when it is not a session."""
        try:
            record = json.loads(data)
            if not isinstance(record, dict):
                raise TypeError("not a JSON object")
            return cls(
                id=_text(record["id"]),
                did=_text(record["did"]),
                key=_unb64url(_text(record["key"])),
                key_id=_text(record["key_id"]),
                audience=_text(record["audience"]),
                created=_number(record["created"]),
                expires_at=_number(record["expires_at"]),
                credential_id=None if record["credential_id"] is None else _text(record["credential_id"]),
                height=_integer(record["height"]),
                status=tuple(
                    (_text(ref[0]), _text(ref[1]), _integer(ref[2])) for ref in record.get("status", [])
                ),
                proof_method=None if record.get("proof_method") is None else _text(record["proof_method"]),
                proof_key=_unb64url(_text(record.get("proof_key", ""))),
                accredited_for=tuple(_text(t) for t in record.get("accredited_for", [])),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ValueError(f"not a stored session: {type(exc).__name__}: {exc}") from None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def open_session(
    *,
    did: str,
    key_id: str,
    audience: str,
    device_key_agreement: X25519PublicKey,
    ttl: float,
    now: float,
    credential_id: str | None = None,
    height: int = 0,
    status: tuple[tuple[str, str, int], ...] = (),
    not_after: float = math.inf,
    proof_method: str | None = None,
    proof_key: bytes = b"",
    accredited_for: tuple[str, ...] = (),
) -> tuple[Session, dict[str, str]]:
    """Open a session for a device that has just passed a full check, and the offer to send it.

    The MAC key comes from a fresh ephemeral X25519 key and the device's ``keyAgreement`` key; the
    ephemeral private key is dropped once the key is derived. The session lasts ``ttl`` seconds (at
    least 1) from ``now`` but ends no later than ``not_after`` (the last moment its credential is
    valid), cut to a whole second so that it ends exactly when the offer's ``expires`` says (so it may
    be over at once: then it is not worth keeping). The offer is ``{"session_id", "verifier_key"
    (X25519 Multikey), "expires" (RFC 3339 UTC)}``. ``proof_method``, ``proof_key`` and
    ``accredited_for`` are kept for the issuer-side checks (see :class:`Session`).
    Raises :class:`ConfigurationError` for a bad ``ttl``, and :class:`wallet.errors.InvalidSharedSecret`
    when ``device_key_agreement`` is a low-order key that would give the all-zero secret.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl >= 1 or math.isinf(ttl):
        raise ConfigurationError(f"session ttl must be a finite number of seconds, at least 1, not {ttl!r}")
    expires_at = float(math.floor(min(now + ttl, not_after)))
    session_id = _b64url(random_bytes(SESSION_ID_SIZE))
    ephemeral = X25519PrivateKey.generate()
    session = Session(
        id=session_id,
        did=did,
        key=session_key(ephemeral, device_key_agreement, session_id),
        key_id=key_id,
        audience=audience,
        created=now,
        expires_at=expires_at,
        credential_id=credential_id,
        height=height,
        status=status,
        proof_method=proof_method,
        proof_key=proof_key,
        accredited_for=accredited_for,
    )
    offer = {
        "session_id": session_id,
        "verifier_key": encode_x25519_public_key(ephemeral.public_key),
        "expires": format_timestamp(datetime.fromtimestamp(expires_at, UTC)),
    }
    return session, offer


class SessionStore(Protocol):
    """Where live sessions are kept."""

    def put(self, session: Session) -> None:
        """Keep ``session`` until it expires or is ended (replacing one with the same id)."""
        ...

    def get(self, session_id: str) -> Session | None:
        """The live session with this id; None when unknown, ended or expired."""
        ...

    def end(self, session_id: str) -> bool:
        """End one session; True if it was live."""
        ...

    def end_device(self, did: str) -> int:
        """End every live session of the device ``did``; return how many were ended."""
        ...

    def count(self) -> int:
        """How many sessions are live."""
        ...


def _check_bound(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, not {value!r}")
    return value


class MemorySessionStore:
    """A thread-safe, bounded :class:`SessionStore` in this process's memory, indexed by DID.

    Expired sessions are purged as new ones arrive. When ``max_sessions`` live sessions are held,
    ``put`` raises :class:`StoreUnavailable` (the device then authenticates fully on each request).
    """

    def __init__(self, max_sessions: int = 1_000_000, clock: Clock = time.time) -> None:
        """Hold at most ``max_sessions`` live sessions; ``clock`` gives wall-clock Unix seconds."""
        self._max_sessions = _check_bound("max_sessions", max_sessions)
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._by_did: dict[str, set[str]] = {}
        self._heap: list[tuple[float, str]] = []

    def put(self, session: Session) -> None:
        """Keep ``session`` until it expires or is ended; an already expired session is not kept."""
        with self._lock:
            now = self._clock()
            self._purge(now)
            self._remove(session.id)
            if session.expires_at <= now:
                return
            if len(self._sessions) >= self._max_sessions:
                raise StoreUnavailable(
                    f"the in-memory session store is full: max_sessions={self._max_sessions} live sessions"
                )
            self._sessions[session.id] = session
            self._by_did.setdefault(session.did, set()).add(session.id)
            heapq.heappush(self._heap, (session.expires_at, session.id))
            if len(self._heap) > 2 * len(self._sessions) + 1024:  # entries left stale by end/end_device
                self._heap = [(s.expires_at, s.id) for s in self._sessions.values()]
                heapq.heapify(self._heap)

    def get(self, session_id: str) -> Session | None:
        """The live session with this id; None when unknown, ended or expired."""
        lock = self._lock
        lock.acquire()  # by hand: a with statement's lookups would cost more than the lock itself
        try:
            session = self._sessions.get(session_id)
            if session is None or session.expires_at <= self._clock():
                return None
            return session
        finally:
            lock.release()

    def end(self, session_id: str) -> bool:
        """End one session; True if it was live."""
        with self._lock:
            session = self._remove(session_id)
            return session is not None and session.expires_at > self._clock()

    def end_device(self, did: str) -> int:
        """End every live session of ``did``; return how many were ended."""
        with self._lock:
            now = self._clock()
            ended = 0
            for session_id in list(self._by_did.get(did, ())):
                session = self._remove(session_id)
                ended += session is not None and session.expires_at > now
            return ended

    def count(self) -> int:
        """How many sessions are live."""
        with self._lock:
            self._purge(self._clock())
            return len(self._sessions)

    def _remove(self, session_id: str) -> Session | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            ids = self._by_did[session.did]
            ids.discard(session_id)
            if not ids:
                del self._by_did[session.did]
        return session

    def _purge(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, session_id = heapq.heappop(heap)
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at == expires_at:
                self._remove(session_id)


class RedisSessionStore:
    """A :class:`SessionStore` in Redis (7.0 or later; a single server or primary, not Redis Cluster).

    Each session is a hash ``<prefix>session:<id>`` that Redis expires at ``expires_at`` (``PEXPIREAT``),
    holding the MAC key as is (see :class:`Session`: keep this Redis on a trusted network). The sorted
    sets ``<prefix>device-sessions:<did>`` (per device, for ``end_device``) and ``<prefix>sessions``
    (for ``count``) hold session ids scored by expiry in milliseconds; expired members are pruned on
    writes. Any Redis error raises :class:`StoreUnavailable`.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = "trellis:",
        clock: Clock = time.time,
    ) -> None:
        """Use the Redis at ``url_or_client`` (a ``redis://`` URL, or a client made with bytes replies).

        ``clock`` decides which index entries have expired; Redis itself expires the sessions.
        """
        self._client = _redis_client(url_or_client)
        self._prefix = prefix
        self._clock = clock
        self._all = f"{prefix}sessions"

    def _session_key(self, session_id: str) -> str:
        return f"{self._prefix}session:{session_id}"

    def _device_key(self, did: str) -> str:
        return f"{self._prefix}device-sessions:{did}"

    def put(self, session: Session) -> None:
        """Keep ``session`` until it expires or is ended (replacing one with the same id)."""
        key, device = self._session_key(session.id), self._device_key(session.did)
        expires_ms, now_ms = _to_milliseconds(session.expires_at), _to_milliseconds(self._clock())
        with _redis_errors("storing a session"), self._client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=_to_hash(session))
            pipe.pexpireat(key, expires_ms)
            pipe.zremrangebyscore(device, "-inf", now_ms)
            pipe.zadd(device, {session.id: expires_ms})
            pipe.pexpireat(device, expires_ms, nx=True)  # a new index expires with its session...
            pipe.pexpireat(device, expires_ms, gt=True)  # ...and an existing one with its last
            pipe.zremrangebyscore(self._all, "-inf", now_ms)
            pipe.zadd(self._all, {session.id: expires_ms})
            pipe.execute()

    def get(self, session_id: str) -> Session | None:
        """The live session with this id; None when unknown, ended or expired."""
        with _redis_errors("reading a session"):
            fields = self._client.hgetall(self._session_key(session_id))
        if not isinstance(fields, dict):  # the client's types also cover its asyncio variant
            raise StoreUnavailable(f"Redis answered HGETALL with {type(fields).__name__}, not a hash")
        if not fields:
            return None
        session = _from_hash(session_id, fields)
        return session if session.expires_at > self._clock() else None

    def end(self, session_id: str) -> bool:
        """End one session; True if it was live."""
        key = self._session_key(session_id)
        with _redis_errors("ending a session"):
            did = self._client.hget(key, "did")
            with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.zrem(self._all, session_id)
                if isinstance(did, bytes):
                    pipe.zrem(self._device_key(did.decode()), session_id)
                deleted = pipe.execute()[0]
        return bool(deleted)

    def end_device(self, did: str) -> int:
        """End every live session of ``did`` (atomically, retrying if one is opened meanwhile)."""
        import redis

        device = self._device_key(did)
        with _redis_errors("ending a device's sessions"), self._client.pipeline(transaction=True) as pipe:
            for _ in range(_END_DEVICE_ATTEMPTS):
                try:
                    pipe.watch(device)  # type: ignore[no-untyped-call]  # redis-py leaves watch untyped
                    members = pipe.zrange(device, 0, -1)
                    if not isinstance(members, list):
                        raise StoreUnavailable(f"Redis answered ZRANGE with {type(members).__name__}")
                    ids = [raw.decode() for raw in members]
                    pipe.multi()
                    pipe.delete(device)
                    if ids:
                        pipe.delete(*(self._session_key(session_id) for session_id in ids))
                        pipe.zrem(self._all, *ids)
                    results = pipe.execute()
                except redis.WatchError:
                    continue
                return int(results[1]) if ids else 0
        raise StoreUnavailable(
            f"could not end the sessions of {did}: new ones kept being opened ({_END_DEVICE_ATTEMPTS} tries)"
        )

    def count(self) -> int:
        """How many sessions are live."""
        with _redis_errors("counting sessions"), self._client.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self._all, "-inf", _to_milliseconds(self._clock()))
            pipe.zcard(self._all)
            return int(pipe.execute()[1])


def _to_hash(session: Session) -> dict[str, bytes | str]:
    fields: dict[str, bytes | str] = {
        "did": session.did,
        "key": session.key,
        "key_id": session.key_id,
        "audience": session.audience,
        "created": repr(session.created),
        "expires_at": repr(session.expires_at),
        "height": str(session.height),
        "status": json.dumps([list(ref) for ref in session.status], separators=(",", ":")),
    }
    if session.credential_id is not None:
        fields["credential_id"] = session.credential_id
    if session.proof_method is not None:
        fields["proof_method"] = session.proof_method
    if session.proof_key:
        fields["proof_key"] = session.proof_key
    if session.accredited_for:
        fields["accredited_for"] = json.dumps(list(session.accredited_for), separators=(",", ":"))
    return fields


def _from_hash(session_id: str, fields: Mapping[bytes, bytes]) -> Session:
    try:
        credential_id, proof_method = fields.get(b"credential_id"), fields.get(b"proof_method")
        return Session(
            id=session_id,
            did=fields[b"did"].decode(),
            key=fields[b"key"],
            key_id=fields[b"key_id"].decode(),
            audience=fields[b"audience"].decode(),
            created=float(fields[b"created"]),
            expires_at=float(fields[b"expires_at"]),
            credential_id=None if credential_id is None else credential_id.decode(),
            height=int(fields[b"height"]),
            status=tuple(
                (str(ref[0]), str(ref[1]), int(ref[2])) for ref in json.loads(fields.get(b"status", b"[]"))
            ),
            proof_method=None if proof_method is None else proof_method.decode(),
            proof_key=fields.get(b"proof_key", b""),
            accredited_for=tuple(str(t) for t in json.loads(fields.get(b"accredited_for", b"[]"))),
        )
    except (KeyError, ValueError, TypeError, IndexError) as exc:  # UnicodeDecodeError is a ValueError
        raise StoreUnavailable(
            f"session {session_id} in Redis is malformed ({type(exc).__name__}: {exc})"
        ) from None
