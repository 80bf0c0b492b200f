"""``trellis device enroll PAYLOAD_OR_QR_IMAGE --wallet DIR``: enrol this device with a portal.

The ``device`` group lives in the wallet layer because it makes keys and keeps them in a device
wallet; :mod:`web.cli` adds it to the ``trellis`` command.
"""

from __future__ import annotations

from pathlib import Path

import click

from wallet.enroll import EnrollmentError, enroll
from wallet.errors import KeystoreError, WalletError
from wallet.keystore import KDF_INTERACTIVE, KDF_MODERATE, passphrase_from_env_or_prompt

__all__ = ["device_group"]

_KDF = {"interactive": KDF_INTERACTIVE, "moderate": KDF_MODERATE}


@click.group("device")
def device_group() -> None:
    """A device's own wallet: enrol with a portal."""


@device_group.command("enroll")
@click.argument("source", metavar="PAYLOAD_OR_QR_IMAGE")
@click.option(
    "--wallet",
    "wallet_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The device wallet folder (created if missing).",
)
@click.option(
    "--kdf",
    type=click.Choice(sorted(_KDF)),
    default="moderate",
    show_default=True,
    help="Argon2id cost of a new wallet's keystore (interactive for small devices).",
)
def enroll_command(source: str, wallet_dir: Path, kdf: str) -> None:
    """Enrol with the portal named in an enrolment payload (JSON text or file) or a QR code image.

    The device makes its own key and DID; only the signed DID creation leaves it. The passphrase of
    the wallet comes from TRELLIS_PASSPHRASE, else a prompt. Prints the device's DID.
    """
    keystore = wallet_dir / "keystore.json"
    try:
        passphrase = passphrase_from_env_or_prompt(keystore, confirm=not keystore.exists())
        wallet = enroll(source, wallet_dir, passphrase, params=_KDF[kdf])
    except EnrollmentError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        raise SystemExit(1) from None
    except (KeystoreError, WalletError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(wallet.did)
