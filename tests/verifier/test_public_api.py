"""verifier's public face: exactly the curated names, each documented, nothing private leaking."""

from __future__ import annotations

import importlib

import verifier

PUBLIC = {
    "Verifier", "Policy", "NetworkTrust", "AuthenticatedDevice", "CredentialSummary",
    "Refused", "Reason", "VerifierError", "ConfigurationError", "StoreUnavailable", "InvalidSnapshot",
    "NonceStore", "MemoryNonceStore", "RedisNonceStore",
    "Session", "SessionStore", "MemorySessionStore", "RedisSessionStore",
}  # fmt: skip


def test_all_is_the_curated_list() -> None:
    """__all__ lists exactly the promised names, once each, and every one is importable and documented."""
    assert set(verifier.__all__) == PUBLIC
    assert len(verifier.__all__) == len(PUBLIC)
    for name in verifier.__all__:
        assert getattr(verifier, name).__doc__, name


def test_the_api_fits_on_one_screen() -> None:
    """The package's __init__ stays small enough to read at a glance."""
    assert verifier.__file__ is not None
    with open(verifier.__file__, encoding="utf-8") as source:
        assert len(source.read().splitlines()) <= 60


def test_public_methods_are_documented() -> None:
    """Every public method of the Verifier has a docstring."""
    for name in dir(verifier.Verifier):
        if not name.startswith("_"):
            assert getattr(verifier.Verifier, name).__doc__, name


def test_testing_module_is_public() -> None:
    """verifier.testing offers StaticLedger for services' own tests."""
    testing = importlib.import_module("verifier.testing")
    assert "StaticLedger" in testing.__all__ and testing.StaticLedger.__doc__
