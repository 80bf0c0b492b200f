"""HTTP Message Components (RFC 9421 §2) of a request, and the signature base built from them (§2.5).

A component is written as a string: a name, then any component parameters in Structured Field form
(RFC 8941), e.g. ``"@method"``, ``"content-digest"``, ``'@query-param;name="id"'``. Its identifier is
checked here (:func:`_check_identifier`, also for identifiers read from ``Signature-Input``), and its
value computed: the derived components of :data:`DERIVED_COMPONENTS` (§2.2) and HTTP fields without
component parameters (§2.1); anything else is refused with :class:`~wallet.errors.UnsupportedComponent`
when a base is built. Part of :mod:`wallet.http_signatures`, which re-exports the public names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit

from http_sfv.item import Item

from wallet.errors import MalformedSignatureHeader, MissingComponent, UnsupportedComponent
from wallet.http_message import HttpRequest, SignatureInput, split_url

__all__ = [
    "DERIVED_COMPONENTS",
    "signature_base",
]

DERIVED_COMPONENTS: Final = frozenset(
    {"@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"}
)
"""The derived components (RFC 9421 §2.2) this module can compute for a request."""
_COMPONENT_PARAMS: Final = {"sf": bool, "key": str, "bs": bool, "req": bool, "tr": bool, "name": str}
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_DERIVED_NAME = re.compile(r"@[a-z0-9-]+")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SFV_ERRORS = (ValueError, IndexError, KeyError, TypeError)  # what http_sfv raises on bad input


# -- component identifiers ------------------------------------------------------------------


def _name(item: Item) -> str:
    """The name of a checked component identifier (always a String)."""
    name = item.value
    assert isinstance(name, str)
    return name


def _check_identifier(item: Item, label: str | None) -> str:
    """Check a parsed component identifier; return its component string."""
    name = item.value
    if type(name) is not str:
        raise MalformedSignatureHeader(f"component identifier {item} is not a String", label=label)
    if not (_FIELD_NAME.fullmatch(name) or _DERIVED_NAME.fullmatch(name)):
        raise MalformedSignatureHeader(
            f"component name {name!r} is neither a lowercase field name nor a derived component", label=label
        )
    for key, value in item.params.items():
        wanted = _COMPONENT_PARAMS.get(key)
        if wanted is None:
            raise MalformedSignatureHeader(f"unknown component parameter {key!r} on {name!r}", label=label)
        if type(value) is not wanted or (wanted is bool and value is not True):
            raise MalformedSignatureHeader(
                f"component parameter {key!r} on {name!r} has a bad value", label=label
            )
    return name + str(item.params)


def _component_item(spec: str) -> Item:
    """Parse a component string (``name`` then Structured Field parameters) into an identifier Item."""
    if not isinstance(spec, str):
        raise UnsupportedComponent(f"a component must be a string, not {type(spec).__name__}")
    name, semicolon, params = spec.partition(";")
    item = Item()
    try:
        item.parse(f'"{name}"{semicolon}{params}'.encode("ascii"))
    except _SFV_ERRORS:
        raise UnsupportedComponent(
            f"component {spec!r} is not a name with Structured Field parameters"
        ) from None
    try:
        _check_identifier(item, None)
    except MalformedSignatureHeader as exc:
        raise UnsupportedComponent(exc.detail) from None
    return item


# -- component values -----------------------------------------------------------------------


def _authority(scheme: str, netloc: str) -> str:
    host_port = netloc.rpartition("@")[2].lower()
    host, colon, port = host_port.rpartition(":")
    if colon and "]" not in port and port.isdigit() and int(port) == _DEFAULT_PORTS.get(scheme):
        return host
    return host_port


def _derived_value(request: HttpRequest, item: Item, spec: str) -> str:
    name = _name(item)
    if name == "@signature-params":
        raise UnsupportedComponent("@signature-params cannot be a covered component (RFC 9421 §2.3)")
    if name not in DERIVED_COMPONENTS:
        raise UnsupportedComponent(f"derived component {name!r} is not supported for requests")
    if item.params:
        raise UnsupportedComponent(f"component parameters of {spec!r} are not supported")
    if name == "@method":
        return request.method
    if name == "@target-uri":
        return request.url
    try:
        parts = split_url(request.url)
    except ValueError:
        parts = urlsplit("")
    if not parts.scheme or not parts.netloc:
        raise MissingComponent(f"{name} needs an absolute target URI, got {request.url!r}")
    if name == "@authority":
        return _authority(parts.scheme.lower(), parts.netloc)
    if name == "@scheme":
        return parts.scheme.lower()
    path = parts.path or "/"
    if name == "@path":
        return path
    if name == "@query":
        return f"?{parts.query}"
    return f"{path}?{parts.query}" if parts.query else path  # @request-target


def _field_value(request: HttpRequest, item: Item, spec: str) -> str:
    name = _name(item)
    if item.params:
        raise UnsupportedComponent(
            f"component parameters of {spec!r} are not supported (sf, key, bs, req, tr)"
        )
    value = request.header(name)
    if value is None:
        raise MissingComponent(f"covered field {name!r} is absent from the message")
    return value


def _texts(item: Item) -> tuple[Item, str, str]:
    """An identifier, its serialized form and its component string."""
    return item, str(item), _name(item) + str(item.params)


def _base(
    request: HttpRequest, items: Sequence[Item | tuple[Item, str, str]], raw_params: str, label: str | None
) -> bytes:
    lines: list[str] = []
    seen: set[str] = set()
    for entry in items:
        item, identifier, spec = entry if isinstance(entry, tuple) else _texts(entry)
        if identifier in seen:
            raise MalformedSignatureHeader(f"component {identifier} is covered twice", label=label)
        seen.add(identifier)
        value = (_derived_value if spec.startswith("@") else _field_value)(request, item, spec)
        if "\r" in value or "\n" in value or not value.isascii():
            raise UnsupportedComponent(f"the value of {spec!r} has a line break or non-ASCII character")
        lines.append(f"{identifier}: {value}")
    lines.append(f'"@signature-params": {raw_params}')
    return "\n".join(lines).encode("ascii")


def signature_base(request: HttpRequest, sig: SignatureInput) -> bytes:
    """The signature base (RFC 9421 §2.5) of ``sig`` over ``request``, as the bytes that were signed."""
    items = [_cached_component_item(spec) for spec in sig.components]
    return _base(request, items, sig.raw_params, sig.label)


@lru_cache(maxsize=512)
def _cached_component_item(spec: str) -> tuple[Item, str, str]:
    """:func:`_component_item` and its texts, once per component string (devices cover the same few;
    the cached items are shared, so nothing may change them)."""
    return _texts(_component_item(spec))
