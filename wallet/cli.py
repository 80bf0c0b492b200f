"""``trellis key …`` and ``trellis vc …``: keystores and credentials from the command line."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx

from did_registry.cli import default_resolver, genesis_option, node_option, optional_client
from did_registry.client import LedgerClient
from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document import DIDDocument
from wallet import ledger_cli  # noqa: F401  (adds did create/update/deactivate to the did group)
from wallet.credential import build_credential, issue_credential, verify_credential
from wallet.errors import KeystoreError, KeystoreExists, VerificationFailed, WalletError
from wallet.holder import did_key_identity
from wallet.keystore import (
    KDF_INTERACTIVE,
    KDF_MODERATE,
    KDF_SENSITIVE,
    Keystore,
    passphrase_from_env_or_prompt,
)
from wallet.presentation import verify_presentation
from wallet.resolver import ResolverKeyLookup
from wallet.status import StatusListChecker

__all__ = ["key_group", "vc_group"]

_KDF = {"interactive": KDF_INTERACTIVE, "moderate": KDF_MODERATE, "sensitive": KDF_SENSITIVE}
_MAX_VALID_DAYS = 100 * 366  # a credential valid longer than a century is a mistake (and dates end in 9999)


def _fail(message: str) -> None:
    click.echo(message, err=True)
    raise SystemExit(1)


@click.group("key")
def key_group() -> None:
    """Create an encrypted keystore holding a new Ed25519 key (`trellis key new`)."""


@key_group.command("new")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keystore file to create.",
)
@click.option(
    "--kdf", type=click.Choice(sorted(_KDF)), default="moderate", show_default=True, help="Argon2id cost."
)
@click.option("--force", is_flag=True, help="Replace an existing file (atomically).")
def key_new(out: Path, kdf: str, force: bool) -> None:
    """Write a new Ed25519 key to an encrypted keystore and print its did:key.

    The passphrase comes from TRELLIS_PASSPHRASE, else a prompt.
    """
    try:
        passphrase = passphrase_from_env_or_prompt(out, confirm=True)
        keystore = Keystore.new(params=_KDF[kdf])
        did, _ = did_key_identity(keystore.current_key)
        keystore.metadata["did"] = did
        keystore.save(out, passphrase, overwrite=force)
    except KeystoreExists:
        _fail(f"error: {out} exists already (--force replaces it)")
    except (KeystoreError, OSError) as exc:
        _fail(f"error: {exc}")
    click.echo(did)


@click.group("vc")
def vc_group() -> None:
    """Issue and verify W3C Verifiable Credentials (eddsa-jcs-2022)."""


@vc_group.command("issue")
@click.option(
    "--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--subject", required=True, help="The subject's DID.")
@click.option("--type", "types", multiple=True, help="Credential type (repeatable).")
@click.option("--claims", default="{}", help="JSON object of claims about the subject.")
@click.option(
    "--valid-days",
    type=click.IntRange(min=1, max=_MAX_VALID_DAYS),
    default=None,
    help="Validity period in days.",
)
@node_option
@genesis_option
def vc_issue(
    key_file: Path,
    subject: str,
    types: tuple[str, ...],
    claims: str,
    valid_days: int | None,
    nodes: tuple[str, ...],
    genesis_file: Path | None,
) -> None:
    """Print a credential about SUBJECT signed with the keystore's key.

    A did:key keystore issues as its did:key, offline. A did:trellis keystore (`trellis did
    create`) issues as its DID and needs --node: the credential is signed with the kept key that the
    DID's document on the ledger (read with proofs) lists for assertionMethod.
    """
    try:
        extra = json.loads(claims)
    except (json.JSONDecodeError, RecursionError) as exc:
        _fail(f"error: --claims is not JSON (or nested too deeply): {exc}")
    if not isinstance(extra, dict) or "id" in extra:
        _fail("error: --claims must be a JSON object without an 'id' (use --subject)")
    try:
        keystore = Keystore.open(key_file, passphrase_from_env_or_prompt(key_file))
    except (KeystoreError, OSError) as exc:
        _fail(f"error: {exc}")
    if keystore.did is not None and keystore.did.startswith("did:trellis:"):
        if not nodes:
            _fail(
                f"error: {key_file} holds the keys of {keystore.did}: pass --node URL (and --genesis) "
                "to sign with the key its DID document on the ledger lists for assertionMethod"
            )
        with optional_client(nodes, genesis_file) as client:
            assert client is not None  # nodes were given
            issuer, key, method = _trellis_issuer(client, keystore, keystore.did)
    else:
        key = keystore.current_key
        issuer, method = did_key_identity(key)
    now = datetime.now(UTC)
    credential = build_credential(
        issuer=issuer,
        subject={"id": subject, **extra},
        types=types,
        credential_id=f"urn:uuid:{uuid.uuid4()}",
        valid_from=now,
        valid_until=now + timedelta(days=valid_days) if valid_days else None,
    )
    try:
        signed = issue_credential(credential, key, method, created=now)
    except WalletError as exc:
        _fail(f"error: {exc}")
    click.echo(json.dumps(signed, indent=2))


def _trellis_issuer(client: LedgerClient, keystore: Keystore, did: str) -> tuple[str, Ed25519PrivateKey, str]:
    """The DID, key and verification method a did:trellis keystore issues with: its DID's document
    on the ledger, read with proofs, must be there and active, and list one of the keystore's keys
    for ``assertionMethod``. The current key when it does, else the newest kept key it lists (a
    rotation whose update never committed leaves the current key unknown to the ledger; see
    :func:`wallet.ledger_cli.signer_on_ledger`, which picks the ``capabilityInvocation`` key the
    same way). The keystore's own key ids are not trusted to name the method: the ledger decides."""
    try:
        document = client.resolve(did).document_or_raise(did)
    except (DidRegistryError, httpx.HTTPError, ValueError, RecursionError) as exc:
        _fail(f"error: cannot issue as {did}: {str(exc) or type(exc).__name__}")
        raise AssertionError from exc  # unreachable
    return did, *_assertion_signer(keystore, did, document)


def _assertion_signer(keystore: Keystore, did: str, document: DIDDocument) -> tuple[Ed25519PrivateKey, str]:
    """The newest kept key of ``keystore`` that ``document`` lists for ``assertionMethod``, with the
    id of the method that lists it (``did#<key id>`` first, else any of the document's own)."""
    listed: list[str] = []
    for method_id in document.relationship("assertionMethod"):
        if method_id.partition("#")[0] == did:  # another DID's method cannot sign as this issuer
            listed.append(method_id)
    for kept in sorted(
        keystore.keys, key=lambda k: (k.retired is None, k.retired or k.created), reverse=True
    ):
        preferred = f"{did}#{kept.id}"
        for method_id in sorted(listed, key=lambda m: m != preferred):
            try:
                if document.public_key_for(method_id, "assertionMethod") == kept.public_key:
                    return kept.private_key, method_id
            except DidRegistryError:
                continue
    _fail(
        f"error: the document of {did} on the ledger lists none of the keys in the keystore for "
        "assertionMethod, so no credential it signs would verify"
    )
    raise AssertionError  # unreachable


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        _fail(f"refused: malformed: cannot read {path}: {exc}")


@vc_group.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--challenge", help="The challenge a presentation must carry.")
@click.option("--domain", help="The domain a presentation must carry.")
@click.option(
    "--status-list",
    "status_lists",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A BitstringStatusListCredential file to check status against (repeatable).",
)
@node_option
@genesis_option
def vc_verify(
    file: Path,
    challenge: str | None,
    domain: str | None,
    status_lists: tuple[Path, ...],
    nodes: tuple[str, ...],
    genesis_file: Path | None,
) -> None:
    """Verify a credential or presentation: exit 0 with a summary, or 1 naming the failed check.

    did:key issuers and holders are checked offline; did:trellis ones need --node.
    """
    document = _load_json(file)
    lists = {}
    for path in status_lists:
        status_list = _load_json(path)
        lists[status_list.get("id") if isinstance(status_list, dict) else None] = status_list

    def source(url: str) -> Any:
        if url not in lists:
            raise LookupError(f"no --status-list file with id {url}")
        return lists[url]

    with optional_client(nodes, genesis_file) as client:
        lookup = ResolverKeyLookup(default_resolver(client))
        status_check = StatusListChecker(source, lookup) if lists else None
        try:
            click.echo(_verify(document, lookup, status_check, challenge, domain))
        except VerificationFailed as exc:
            _fail(f"refused: {exc}")


def _verify(
    document: Any,
    lookup: ResolverKeyLookup,
    status_check: StatusListChecker | None,
    challenge: str | None,
    domain: str | None,
) -> str:
    """Verify and return the one-line summary."""
    types = document.get("type", []) if isinstance(document, dict) else []
    if types == "VerifiablePresentation" or (isinstance(types, list) and "VerifiablePresentation" in types):
        proof = document.get("proof") if isinstance(document.get("proof"), dict) else {}
        unchecked = challenge is None or domain is None
        result = verify_presentation(
            document,
            lookup,
            challenge=challenge if challenge is not None else str(proof.get("challenge", "")),
            domain=domain if domain is not None else _any_domain(proof.get("domain", "")),
            status_check=status_check,
        )
        note = " (challenge/domain not checked: pass --challenge and --domain)" if unchecked else ""
        return (
            f"valid presentation by {result.holder} with {len(result.credentials)} credential(s)"
            f"{_status_note(document, status_check)}{note}"
        )
    credential = verify_credential(document, lookup, status_check=status_check)
    kind = ", ".join(t for t in credential.types if t != "VerifiableCredential") or "credential"
    until = f", valid until {document['validUntil']}" if credential.valid_until else ""
    return (
        f"valid {kind} {credential.id or '(no id)'} issued by {credential.issuer} "
        f"to {', '.join(credential.subject_ids) or '(no subject id)'}{until}"
        f"{_status_note(document, status_check)}"
    )


def _any_domain(value: object) -> str:
    """A domain the proof names (the first of a set), to verify with when none was asked for."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return str(value)


def _status_note(document: Any, status_check: object) -> str:
    has_status = "credentialStatus" in json.dumps(document)
    if not has_status:
        return ""
    return "; status checked" if status_check is not None else "; status not checked (pass --status-list)"
