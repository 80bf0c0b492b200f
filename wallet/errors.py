"""Errors raised by :mod:`wallet`.

::

    WalletError
    ├── KeystoreError                   an encrypted keystore file cannot be used
    │   ├── WrongPassphrase             the passphrase does not open the keystore
    │   ├── KeystoreCorrupted           truncated, tampered or not a keystore at all
    │   ├── UnsupportedKeystoreVersion  written by a newer (or unknown) format version
    │   └── KeystoreExists              refusing to overwrite an existing keystore
    ├── VerificationFailed              a credential or presentation was refused; ``check`` names the check
    │   ├── MalformedDocument           not a well-formed VC 2.0 / Data Integrity document
    │   ├── UnsupportedCryptosuite      a proof type or cryptosuite other than eddsa-jcs-2022
    │   ├── InvalidSignature            the proof's signature does not verify
    │   ├── UnknownVerificationMethod   the proof's key cannot be found or resolved
    │   ├── WrongVerificationRelationship  the key is not authorised for the proof's purpose
    │   ├── CredentialExpired           now is after ``validUntil``
    │   ├── CredentialNotYetValid       now is before ``validFrom``
    │   ├── ChallengeMismatch           the presentation's ``challenge`` is not the one expected
    │   ├── DomainMismatch              the presentation's ``domain`` is not the one expected
    │   ├── HolderMismatch              a credential's subject is not the presentation's holder
    │   ├── IssuerMismatch              the proof's key is not controlled by the ``issuer``
    │   └── CredentialStatusRefused     the status list says revoked or suspended
    ├── IssuerError                     the issuer cannot do what was asked
    │   └── StatusListFull              no free index left in a status list
    ├── HttpSignatureError              an HTTP message signature or digest cannot be made or is refused
    │   ├── MalformedSignatureHeader    Signature-Input / Signature unparsable, mismatched or oversize
    │   ├── UnsupportedComponent        a covered component this code does not derive
    │   ├── MissingComponent            a covered component is absent from the message
    │   ├── UnsupportedAlgorithm        a signature or digest algorithm this code does not use
    │   ├── SignatureMismatch           the signature does not verify over the signature base
    │   ├── MalformedDigestHeader       Content-Digest unparsable or without a known algorithm
    │   └── DigestMismatch              the body does not hash to the Content-Digest
    └── SessionError                    a session key cannot be agreed or used
        ├── InvalidSharedSecret         X25519 gave the all-zero secret (a low-order peer key)
        ├── MalformedSessionOffer       a verifier's session offer is not well formed
        └── NoSession                   no session started, or it has expired
"""

from __future__ import annotations

__all__ = [
    "WalletError",
    "KeystoreError",
    "WrongPassphrase",
    "KeystoreCorrupted",
    "UnsupportedKeystoreVersion",
    "KeystoreExists",
    "VerificationFailed",
    "MalformedDocument",
    "UnsupportedCryptosuite",
    "InvalidSignature",
    "UnknownVerificationMethod",
    "WrongVerificationRelationship",
    "CredentialExpired",
    "CredentialNotYetValid",
    "ChallengeMismatch",
    "DomainMismatch",
    "HolderMismatch",
    "IssuerMismatch",
    "CredentialStatusRefused",
    "IssuerError",
    "StatusListFull",
    "HttpSignatureError",
    "MalformedSignatureHeader",
    "UnsupportedComponent",
    "MissingComponent",
    "UnsupportedAlgorithm",
    "SignatureMismatch",
    "MalformedDigestHeader",
    "DigestMismatch",
    "SessionError",
    "InvalidSharedSecret",
    "MalformedSessionOffer",
    "NoSession",
]


class WalletError(Exception):
    """Root of every error raised by :mod:`wallet`."""


class KeystoreError(WalletError):
    """An encrypted keystore cannot be read or written; ``path`` names the file."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"keystore {path}: {reason}")


class WrongPassphrase(KeystoreError):
    """The passphrase does not open the keystore."""


class KeystoreCorrupted(KeystoreError):
    """The keystore is truncated, tampered with, or not a keystore."""


class UnsupportedKeystoreVersion(KeystoreError):
    """The keystore was written in a format version this code does not read."""


class KeystoreExists(KeystoreError):
    """A keystore already exists where a new one was to be created."""


class VerificationFailed(WalletError):
    """A credential or presentation was refused; ``check`` names the failed check."""

    check = "verification"

    def __init__(self, detail: str, *, subject: str | None = None) -> None:
        self.detail = detail
        self.subject = subject  # the credential id, DID or verification method involved
        where = f" ({subject})" if subject else ""
        super().__init__(f"{self.check}: {detail}{where}")


class MalformedDocument(VerificationFailed):
    """The document is not a well-formed VC 2.0 credential or presentation with a Data Integrity proof."""

    check = "malformed"


class UnsupportedCryptosuite(VerificationFailed):
    """The proof is not a ``DataIntegrityProof`` with cryptosuite ``eddsa-jcs-2022``."""

    check = "unsupported_cryptosuite"


class InvalidSignature(VerificationFailed):
    """The proof's Ed25519 signature does not verify over the document."""

    check = "bad_signature"


class UnknownVerificationMethod(VerificationFailed):
    """The proof's ``verificationMethod`` cannot be resolved to a key."""

    check = "unknown_key"


class WrongVerificationRelationship(VerificationFailed):
    """The key exists but is not listed under the relationship the proof's purpose needs."""

    check = "wrong_relationship"


class CredentialExpired(VerificationFailed):
    """The credential's ``validUntil`` has passed."""

    check = "expired"


class CredentialNotYetValid(VerificationFailed):
    """The credential's ``validFrom`` is in the future."""

    check = "not_yet_valid"


class ChallengeMismatch(VerificationFailed):
    """The presentation proof's ``challenge`` is missing or not the expected one."""

    check = "wrong_challenge"


class DomainMismatch(VerificationFailed):
    """The presentation proof's ``domain`` is missing or not the expected one."""

    check = "wrong_domain"


class HolderMismatch(VerificationFailed):
    """A presented credential's subject is not the holder who signed the presentation."""

    check = "holder_mismatch"


class CredentialStatusRefused(VerificationFailed):
    """The credential's status list entry is set: ``purpose`` is ``revocation`` or ``suspension``."""

    check = "status"

    def __init__(self, detail: str, *, purpose: str, subject: str | None = None) -> None:
        self.purpose = purpose
        self.check = "revoked" if purpose == "revocation" else "suspended"
        super().__init__(detail, subject=subject)


class IssuerError(WalletError):
    """The issuer cannot do what was asked."""


class StatusListFull(IssuerError):
    """Every index of the issuer's status list has been handed out."""


class IssuerMismatch(VerificationFailed):
    """The credential's proof was made with a key that its ``issuer`` does not control."""

    check = "issuer_mismatch"


class HttpSignatureError(WalletError):
    """An HTTP message signature (RFC 9421) or content digest (RFC 9530) is refused; ``check`` names the check.

    ``label`` is the signature's label in ``Signature-Input`` when one is involved.
    """

    check = "http_signature"

    def __init__(self, detail: str, *, label: str | None = None) -> None:
        self.detail = detail
        self.label = label
        where = f" (signature {label!r})" if label else ""
        super().__init__(f"{self.check}: {detail}{where}")


class MalformedSignatureHeader(HttpSignatureError):
    """``Signature-Input`` or ``Signature`` cannot be parsed, is oversize, or the two do not match up."""

    check = "malformed_signature"


class UnsupportedComponent(HttpSignatureError):
    """A covered component (or component parameter) that this implementation does not derive."""

    check = "unsupported_component"


class MissingComponent(HttpSignatureError):
    """A covered component is absent from the message, so the signature base cannot be built."""

    check = "missing_component"


class UnsupportedAlgorithm(HttpSignatureError):
    """A signature algorithm other than ``ed25519``/``hmac-sha256``, or a digest other than SHA-2."""

    check = "unsupported_algorithm"


class SignatureMismatch(HttpSignatureError):
    """The signature does not verify over the signature base with the given key."""

    check = "bad_signature"


class MalformedDigestHeader(HttpSignatureError):
    """``Content-Digest`` is not a Dictionary of byte sequences, or names no algorithm known here."""

    check = "malformed_digest"


class DigestMismatch(HttpSignatureError):
    """The message body does not hash to the value in ``Content-Digest``."""

    check = "digest_mismatch"


class SessionError(WalletError):
    """A session key cannot be agreed or used."""


class InvalidSharedSecret(SessionError):
    """X25519 gave the all-zero shared secret: the peer's key is of low order."""


class MalformedSessionOffer(SessionError):
    """A verifier's session offer lacks a field or has one of the wrong form."""


class NoSession(SessionError):
    """A session request was made with no session started, or after the session expired."""
