"""The ``trellis`` command: one group per area, each defined in its own layer; ``trellis web`` is the portal's."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from did_registry.cli import did_group
from wallet.cli import key_group, vc_group
from wallet.enroll_cli import device_group
from wallet.network_cli import network_group, node_group
from wallet.validator_cli import validator_group

if TYPE_CHECKING:
    from flask import Flask

    from web.config import PortalConfig

__all__ = ["ADMIN_PASSWORD_ENV", "main", "web_group"]

ADMIN_PASSWORD_ENV = "TRELLIS_ADMIN_PASSWORD"  # noqa: S105 (a variable name)
"""Environment variable ``trellis web create-admin`` reads the password from (else it prompts)."""

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@click.group()
@click.version_option(package_name="trellis")
def main() -> None:
    """Trellis: self-sovereign identity and device authentication for IoT fleets."""


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _config(**overrides: Any) -> PortalConfig:
    from web.config import PortalConfig

    given = {name: value for name, value in overrides.items() if value not in (None, ())}
    try:
        return dataclasses.replace(PortalConfig.from_env(), **given)
    except (ValueError, OverflowError) as exc:  # (an environment variable that is no setting)
        _fail(str(exc))


def _app(config: PortalConfig) -> Flask:
    """The portal app of ``config``, or a clear error when its instance or database cannot be had."""
    from sqlalchemy.exc import SQLAlchemyError

    from web.app import create_app

    try:
        return create_app(config)
    except (OSError, ValueError, SQLAlchemyError) as exc:
        _fail(f"cannot open the portal's instance or database: {exc}")


def _check_genesis(config: PortalConfig) -> None:
    """A clear error now for a genesis file the portal could not use (it reads it at first use)."""
    from did_registry.genesis_file import GenesisFileError, read_genesis_file

    if config.genesis_path is not None:
        try:
            read_genesis_file(config.genesis_path)
        except GenesisFileError as exc:
            _fail(str(exc))


_instance_option = click.option(
    "--instance",
    "instance_path",
    type=click.Path(file_okay=False, path_type=Path),
    help="The portal's instance folder (default: $TRELLIS_WEB_INSTANCE or ./instance).",
)
_database_option = click.option(
    "--database-url", help="SQLAlchemy URL (default: $TRELLIS_WEB_DATABASE_URL or <instance>/portal.db)."
)


@click.group("web")
def web_group() -> None:
    """The fleet operators' portal."""


@web_group.command("create-admin")
@click.option("--username", required=True, help="The new admin's username.")
@_instance_option
@_database_option
def create_admin(username: str, instance_path: Path | None, database_url: str | None) -> None:
    """Create an admin account (password from $TRELLIS_ADMIN_PASSWORD, else asked twice)."""
    from web import audit
    from web.accounts import InvalidInput, create_operator
    from web.db import session
    from web.models import Role
    from web.portal import portal

    password = os.environ.get(ADMIN_PASSWORD_ENV) or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    app = _app(_config(instance_path=instance_path, database_url=database_url))
    with app.app_context(), session() as db:
        try:
            operator = create_operator(db, portal().passwords, username, password, Role.ADMIN)
        except InvalidInput as exc:
            _fail(exc.message)
        audit.record("operator.create", operator.username, detail={"role": operator.role, "via": "cli"})
    click.echo(f"admin {operator.username} created")


@web_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port."
)
@_instance_option
@_database_option
@click.option(
    "--node", "node_urls", multiple=True, help="A ledger node URL (repeatable; $TRELLIS_WEB_NODES)."
)
@click.option(
    "--genesis", "genesis_path", type=click.Path(dir_okay=False, path_type=Path), help="The genesis file."
)
@click.option(
    "--secure-cookies/--no-secure-cookies",
    default=None,
    help="Mark the session cookie Secure (turn on whenever the portal is reached over TLS).",
)
def serve_command(
    host: str,
    port: int,
    instance_path: Path | None,
    database_url: str | None,
    node_urls: tuple[str, ...],
    genesis_path: Path | None,
    secure_cookies: bool | None,
) -> None:
    """Serve the portal with waitress until interrupted (a genesis file that is no genesis stops it first)."""
    from web.server import limits_for, serve

    config = _config(
        instance_path=instance_path,
        database_url=database_url,
        node_urls=node_urls,
        genesis_path=genesis_path,
        secure_cookies=secure_cookies,
    )
    _check_genesis(config)
    if host not in _LOOPBACK and not config.secure_cookies:
        click.echo("warning: serving beyond loopback without --secure-cookies; put TLS in front", err=True)
    app = _app(config)
    try:
        serve(app, host, port, limits=limits_for(config.trusted_proxies))
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


main.add_command(key_group)
main.add_command(vc_group)
main.add_command(did_group)
main.add_command(network_group)
main.add_command(node_group)
main.add_command(web_group)
main.add_command(device_group)
main.add_command(validator_group)
