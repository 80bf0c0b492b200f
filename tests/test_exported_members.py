"""Each package's public names are exactly its curated ``__all__``, and every one exists."""

from __future__ import annotations

import importlib
import importlib.resources

import pytest

PACKAGES = {
    "did_registry": {
        "DID", "DIDURL", "parse_did", "parse_did_url", "DIDDocument", "Ed25519PrivateKey", "Ed25519PublicKey",
        "canonicalize", "BitstringStatusList", "Resolver", "ResolutionResult", "DidRegistryError", "InvalidDID",
        "InvalidDIDDocument", "ResolutionError",
    },
    "wallet": {
        "Keystore", "HolderWallet", "DeviceWallet", "Challenge", "Issuer", "build_credential", "issue_credential",
        "verify_credential", "VerifiedCredential", "build_presentation", "sign_presentation", "verify_presentation",
        "VerifiedPresentation", "StatusListChecker", "ResolverKeyLookup", "did_key_lookup", "WalletError",
        "VerificationFailed",
    },
    "verifier": {
        "Verifier", "Policy", "NetworkTrust", "AuthenticatedDevice", "CredentialSummary", "Refused", "Reason",
        "VerifierError", "ConfigurationError", "StoreUnavailable", "InvalidSnapshot", "NonceStore",
        "MemoryNonceStore", "RedisNonceStore", "Session", "SessionStore", "MemorySessionStore",
        "RedisSessionStore",
    },
    "web": set(),
    "fleet": {"SimulationConfig", "simulate", "write_report", "FleetNetwork", "FleetError", "NetworkFault"},
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_all_is_the_curated_list(package: str) -> None:
    """``__all__`` lists exactly the names the package promises, each importable and documented."""
    module = importlib.import_module(package)
    assert set(module.__all__) == PACKAGES[package]
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert getattr(module, name).__doc__, f"{package}.{name} has no docstring"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_is_typed(package: str) -> None:
    """Every package ships a py.typed marker."""
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert (importlib.resources.files(package) / "py.typed").is_file()
