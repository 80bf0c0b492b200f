"""The device side of talking to a service protected by the Trellis verifier.

:class:`DeviceClient` wraps an :class:`httpx.Client`. :meth:`~DeviceClient.signed_request` signs each
request with RFC 9421 ``ed25519`` under the device's authentication key (``keyid`` is the key's DID
URL), covering ``@method``, ``@target-uri`` and ``content-digest`` (RFC 9530, SHA-256 of the body),
with ``created``, ``expires`` one minute later, and a random ``nonce``. Redirects are never followed
(whatever the :class:`httpx.Client` was made with): a 3xx answer is returned to the caller. It also sends the device's
credential in the ``Device-Credential`` header (:func:`encode_device_credential`: base64url without
padding of its JCS form, RFC 8785), which the verifier reads to admit the device; the header is not
signed (the credential carries its issuer's proof and names the device).

:meth:`~DeviceClient.answer_challenge` answers only a challenge whose ``audience`` is the origin
(``https://host[:port]``) or the authority (``host[:port]``) of the client's base URL, the two forms a
verifier's audience takes (``verifier.wsgi.service_audience``): a service cannot pass another service's
challenge on to the device and redeem the answer there.

A verifier may offer a session: ``{"session_id", "verifier_key", "expires"}`` where ``verifier_key``
is its X25519 public key as a Multikey (``z6LS…``) and ``expires`` a Unix time or an XML Schema
``dateTimeStamp``. After :meth:`~DeviceClient.start_session`, :meth:`~DeviceClient.session_request`
signs with ``hmac-sha256`` under the session key (:func:`wallet.session_keys.session_key` of the
device's ``keyAgreement`` key, the X25519 form of its current Ed25519 key) with ``keyid`` the session
id.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Protocol

import httpx

from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey, random_bytes
from did_registry.identity.jcs import canonicalize
from did_registry.identity.multikey import decode_x25519_public_key
from did_registry.identity.timestamps import InvalidTimestamp, parse_timestamp
from wallet.device import Challenge
from wallet.errors import MalformedSessionOffer, NoSession, WalletError
from wallet.http_signatures import HttpRequest, sign_request
from wallet.session_keys import session_key

__all__ = [
    "CREDENTIAL_HEADER",
    "SIGNED_COMPONENTS",
    "SIGNATURE_LIFETIME",
    "NONCE_SIZE",
    "Session",
    "DeviceIdentity",
    "DeviceClient",
    "new_nonce",
    "encode_device_credential",
]

CREDENTIAL_HEADER: Final = "Device-Credential"
"""The request header carrying the device's credential (see :func:`encode_device_credential`)."""

SIGNED_COMPONENTS: Final = ("@method", "@target-uri", "content-digest")
"""What a device's request signature covers."""
SIGNATURE_LIFETIME: Final = 60
"""Seconds from ``created`` to ``expires`` of a request signature."""
NONCE_SIZE: Final = 16
"""Random bytes in a signature's ``nonce`` (sent as base64url without padding)."""


def new_nonce() -> str:
    """A fresh random nonce: base64url (no padding) of :data:`NONCE_SIZE` bytes."""
    return base64.urlsafe_b64encode(random_bytes(NONCE_SIZE)).rstrip(b"=").decode("ascii")


def encode_device_credential(credential: Mapping[str, Any]) -> str:
    """The ``Device-Credential`` header value: base64url (no padding) of the credential's JCS (RFC 8785)."""
    return base64.urlsafe_b64encode(canonicalize(credential)).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Session:
    """A session a verifier offered: its id, the derived ``hmac-sha256`` key and its end (Unix time)."""

    session_id: str
    key: bytes = field(repr=False)  # the HMAC key: never in a log line
    expires: int


def _expiry(value: object) -> int:
    if type(value) is int:
        return value
    try:
        return int(parse_timestamp(value).timestamp())
    except InvalidTimestamp as exc:
        raise MalformedSessionOffer(
            f"session offer 'expires' is neither Unix time nor a timestamp: {exc}"
        ) from None


class DeviceIdentity(Protocol):
    """What a :class:`DeviceClient` needs of a device: a :class:`~wallet.device.DeviceWallet`, or a
    simulated device holding its key in memory."""

    @property
    def key(self) -> Ed25519PrivateKey:
        """The current Ed25519 key."""
        ...

    @property
    def verification_method(self) -> str:
        """The current key's DID URL."""
        ...

    def device_credential(self) -> dict[str, Any]:
        """The device credential to present."""
        ...

    def answer(self, challenge: Challenge) -> dict[str, Any]:
        """A presentation of the device credential answering ``challenge``."""
        ...


class DeviceClient:
    """A device's HTTP client: requests signed by its DID key, challenge answers, session requests."""

    def __init__(
        self,
        wallet: DeviceIdentity,
        base_url: str,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.wallet = wallet
        self.base_url = base_url.rstrip("/")
        self._owns_http = http is None
        self.http = http if http is not None else httpx.Client()
        self._clock = clock
        self.session: Session | None = None

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        content: bytes | str | None,
        headers: Mapping[str, str] | None,
        sign: Callable[[HttpRequest, int], dict[str, str]],
    ) -> httpx.Response:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        request = self.http.build_request(
            method, self.base_url + path, json=json, content=content, headers=dict(headers or {})
        )
        message = HttpRequest(request.method, str(request.url), dict(request.headers), request.content)
        request.headers.update(sign(message, int(self._clock())))
        # never follow a redirect, even with a client made with follow_redirects=True: the signature,
        # the credential and the body would go to wherever the Location says; a 3xx is the caller's
        return self.http.send(request, follow_redirects=False)

    def signed_request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request signed with ``ed25519`` by the device's current key (keyid: its DID URL).

        The wallet's device credential goes along in the ``Device-Credential`` header unless
        ``headers`` already carries one (raises :class:`~wallet.errors.WalletError` if it holds none).
        """
        extra = dict(headers or {})
        if not any(name.lower() == CREDENTIAL_HEADER.lower() for name in extra):
            extra[CREDENTIAL_HEADER] = encode_device_credential(self.wallet.device_credential())

        def sign(message: HttpRequest, now: int) -> dict[str, str]:
            return sign_request(
                message,
                key=self.wallet.key,
                keyid=self.wallet.verification_method,
                components=SIGNED_COMPONENTS,
                created=now,
                expires=now + SIGNATURE_LIFETIME,
                nonce=new_nonce(),
                alg="ed25519",
            )

        return self._send(method, path, json=json, content=content, headers=extra, sign=sign)

    def audiences(self) -> tuple[str, str]:
        """The audiences this client answers challenges for: the authority (``host[:port]``) and the
        origin (``scheme://host[:port]``) of its base URL, as the verifier derives them from a request."""
        url = httpx.URL(self.base_url)
        authority = url.netloc.decode("ascii")
        return authority, f"{url.scheme}://{authority}"

    def answer_challenge(self, challenge_json: Mapping[str, Any]) -> dict[str, Any]:
        """The presentation of the device credential that answers a verifier's challenge.

        Only a challenge for this client's own service is answered: its ``audience`` must be the
        origin or the authority of the base URL (:meth:`audiences`). Any other audience raises
        :class:`~wallet.errors.WalletError`, so that a service cannot relay another service's challenge
        and get the device's presentation for it.
        """
        challenge = Challenge.from_json(challenge_json)
        if challenge.audience not in self.audiences():
            raise WalletError(
                f"refusing a challenge for audience {challenge.audience!r}: "
                f"this client talks to {self.audiences()[1]}"
            )
        return self.wallet.answer(challenge)

    # -- sessions ---------------------------------------------------------------------------
    def start_session(self, offer: Mapping[str, Any]) -> None:
        """Accept a verifier's session offer: derive the session key and use it from now on."""
        if not isinstance(offer, Mapping):
            raise MalformedSessionOffer(f"a session offer is a JSON object, not {type(offer).__name__}")
        missing = [name for name in ("session_id", "verifier_key", "expires") if name not in offer]
        if missing:
            raise MalformedSessionOffer(f"session offer lacks {', '.join(missing)}")
        session_id, verifier_key = offer["session_id"], offer["verifier_key"]
        if not isinstance(session_id, str) or not session_id:
            raise MalformedSessionOffer("session offer 'session_id' must be a non-empty string")
        try:
            peer = decode_x25519_public_key(verifier_key)
        except DidRegistryError as exc:
            raise MalformedSessionOffer(
                f"session offer 'verifier_key' is not an X25519 Multikey: {exc}"
            ) from None
        expires = _expiry(offer["expires"])
        if expires <= int(self._clock()):
            raise MalformedSessionOffer("session offer has already expired")
        key = session_key(self.wallet.key.to_x25519(), peer, session_id)
        self.session = Session(session_id, key, expires)

    def session_request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request signed with ``hmac-sha256`` under the session key (keyid: the session id)."""
        session = self.session
        if session is None:
            raise NoSession("no session started; call start_session with the verifier's offer")
        if int(self._clock()) >= session.expires:
            self.session = None
            raise NoSession(f"session {session.session_id!r} has expired")

        def sign(message: HttpRequest, now: int) -> dict[str, str]:
            return sign_request(
                message,
                key=session.key,
                keyid=session.session_id,
                components=SIGNED_COMPONENTS,
                created=now,
                expires=min(now + SIGNATURE_LIFETIME, session.expires),
                nonce=new_nonce(),
                alg="hmac-sha256",
            )

        return self._send(method, path, json=json, content=content, headers=headers, sign=sign)
