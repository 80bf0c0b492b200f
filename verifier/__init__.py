"""Trellis verifier: authenticate IoT devices against the DID documents and registries of a trusted ledger.

::

    from verifier import NetworkTrust, Policy, Refused, Verifier

    verifier = Verifier([NetworkTrust("citynet", ["https://node-1.example"], genesis)])
    challenge = verifier.challenge("https://service.example")      # send to the device
    try:
        device = verifier.authenticate_presentation(answer, "https://service.example")
    except Refused as refused:
        ...                                 # refused.reason, refused.detail, refused.status

Signed requests (RFC 9421) go through :meth:`Verifier.authenticate_request`; gateways batch with
:meth:`Verifier.authenticate_many`. :mod:`verifier.testing` offers an in-memory ledger for tests.
"""

from __future__ import annotations

from verifier._checks import CredentialSummary
from verifier.errors import ConfigurationError, Reason, Refused, StoreUnavailable, VerifierError
from verifier.policy import NetworkTrust, Policy
from verifier.replay import MemoryNonceStore, NonceStore, RedisNonceStore
from verifier.sessions import MemorySessionStore, RedisSessionStore, Session, SessionStore
from verifier.snapshot import InvalidSnapshot
from verifier.verifier import AuthenticatedDevice, Verifier

__all__ = [
    # authenticating devices
    "Verifier",
    "Policy",
    "NetworkTrust",
    "AuthenticatedDevice",
    "CredentialSummary",
    # refusals and errors
    "Refused",
    "Reason",
    "VerifierError",
    "ConfigurationError",
    "StoreUnavailable",
    "InvalidSnapshot",
    # replay protection and sessions
    "NonceStore",
    "MemoryNonceStore",
    "RedisNonceStore",
    "Session",
    "SessionStore",
    "MemorySessionStore",
    "RedisSessionStore",
]
