"""HTTP Message Signatures (RFC 9421) over requests, with ``ed25519`` and ``hmac-sha256``.

A signer lists the *covered components* of a request (derived components such as ``@method`` and
``@target-uri``, §2.2, and HTTP fields by lowercase name, §2.1), builds the *signature base* from
their values (§2.5), and sends the list with its parameters in ``Signature-Input`` and the signature
in ``Signature``, both Structured Field Dictionaries keyed by a label (§4). Structured Field values
(RFC 8941) are parsed and serialized with :mod:`http_sfv`.

Components are written as strings: a name, then any component parameters in Structured Field form,
e.g. ``"@method"``, ``"content-digest"``, ``'@query-param;name="id"'``. Supported here: the derived
components ``@method``, ``@target-uri``, ``@authority``, ``@scheme``, ``@request-target``, ``@path``
and ``@query``, and HTTP fields without component parameters. Anything else (``@query-param``,
``@status``, ``;sf``, ``;key``, ``;bs``, ``;req``, ``;tr``) parses but is refused when a signature base
is built, with :class:`~wallet.errors.UnsupportedComponent`.

The verifier chooses the key (by ``keyid``) and so the algorithm: an Ed25519 public key means
``ed25519``, bytes mean ``hmac-sha256``; an ``alg`` parameter that disagrees is refused. Time and
nonce policy (``created``, ``expires``, replay) is the verifier's, not this module's.
"""

from __future__ import annotations

import binascii
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Final
from urllib.parse import SplitResult, urlsplit

from http_sfv.dictionary import Dictionary
from http_sfv.item import AllItemType, InnerList, Item

from did_registry.errors import BadSignature
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey
from wallet import _sf_fast
from wallet.content_digest import content_digest, verify_content_digest
from wallet.errors import (
    MalformedSignatureHeader,
    MissingComponent,
    SignatureMismatch,
    UnsupportedAlgorithm,
    UnsupportedComponent,
)

__all__ = [
    "SIGNATURE_ALGORITHMS",
    "DERIVED_COMPONENTS",
    "MAX_SIGNATURE_HEADER_SIZE",
    "HMAC_MIN_KEY_SIZE",
    "HttpRequest",
    "SignatureInput",
    "sign_request",
    "parse_signatures",
    "signature_base",
    "FastSignature",
    "fast_signature_base",
    "verify_signature",
    "split_url",
]

SIGNATURE_ALGORITHMS: Final = ("ed25519", "hmac-sha256")
"""The RFC 9421 §6.2 algorithms implemented here."""
DERIVED_COMPONENTS: Final = frozenset(
    {"@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"}
)
"""The derived components (RFC 9421 §2.2) this module can compute for a request."""
MAX_SIGNATURE_HEADER_SIZE: Final = 8192
"""Longest ``Signature-Input`` or ``Signature`` value read, in characters."""
HMAC_MIN_KEY_SIZE: Final = 32
"""Shortest ``hmac-sha256`` key accepted, in bytes (the hash's output size, RFC 2104 §3)."""
SPLIT_CACHED_MAX: Final = 2048
"""The longest URL :func:`split_url` lets the standard library's cache keep."""
_urlsplit_uncached: Callable[[str], SplitResult] = getattr(urlsplit, "__wrapped__", urlsplit)


def split_url(url: str) -> SplitResult:
    """:func:`urllib.parse.urlsplit`, but a URL longer than :data:`SPLIT_CACHED_MAX` characters is
    split without the standard library's cache (CPython keeps the last 128 URLs split, whatever their
    length: a sender's long URLs would stay in memory)."""
    return urlsplit(url) if len(url) <= SPLIT_CACHED_MAX else _urlsplit_uncached(url)


_SIGNATURE_PARAMS: Final = {
    "created": int,
    "expires": int,
    "nonce": str,
    "alg": str,
    "keyid": str,
    "tag": str,
}
_COMPONENT_PARAMS: Final = {"sf": bool, "key": str, "bs": bool, "req": bool, "tr": bool, "name": str}
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_DERIVED_NAME = re.compile(r"@[a-z0-9-]+")
_OBS_FOLD = re.compile(r"\r\n[ \t]+")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SFV_ERRORS = (ValueError, IndexError, KeyError, TypeError)  # what http_sfv raises on bad input

SigningKey = Ed25519PrivateKey | bytes
VerifyingKey = Ed25519PublicKey | bytes


def _combine_field(values: Iterable[str]) -> str:
    """One field's value from its field lines: each trimmed, obs-folds replaced, joined by ``, `` (§2.1)."""
    return ", ".join(_OBS_FOLD.sub(" ", value).strip(" \t") for value in values)


@dataclass(frozen=True)
class HttpRequest:
    """The parts of an HTTP request that signatures cover; ``headers`` are looked up case-insensitively.

    Header names are stored lower-cased; names that differ only in case are combined as repeated
    field lines are (RFC 9421 §2.1). Use :meth:`from_fields` when a field has several lines.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        lines: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            lines.setdefault(name.lower(), []).append(value)
        combined = {name: _combine_field(values) for name, values in lines.items()}
        object.__setattr__(self, "headers", MappingProxyType(combined))
        object.__setattr__(self, "body", bytes(self.body))

    @classmethod
    def from_fields(
        cls, method: str, url: str, fields: Iterable[tuple[str, str]], body: bytes = b""
    ) -> HttpRequest:
        """A request from field lines in message order (a name may repeat), e.g. a WSGI header list."""
        lines: dict[str, list[str]] = {}
        for name, value in fields:
            lines.setdefault(name.lower(), []).append(value)
        return cls(method, url, {name: _combine_field(values) for name, values in lines.items()}, body)

    def header(self, name: str) -> str | None:
        """The combined value of field ``name`` (any case), or ``None`` when absent."""
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class SignatureInput:
    """One signature of a message: its label, covered components, parameters and signature bytes.

    ``components`` are component strings as described in the module docstring; ``raw_params`` is
    the serialized ``@signature-params`` value (the Inner List with its parameters).
    """

    label: str
    components: tuple[str, ...]
    keyid: str | None
    alg: str | None
    created: int | None
    expires: int | None
    nonce: str | None
    tag: str | None
    signature: bytes
    raw_params: str


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


# -- signing ----------------------------------------------------------------------------------


def _sign(alg: str, key: SigningKey, base: bytes) -> bytes:
    if alg == "ed25519":
        if not isinstance(key, Ed25519PrivateKey):
            raise UnsupportedAlgorithm(f"ed25519 signs with an Ed25519PrivateKey, not {type(key).__name__}")
        return key.sign(base)
    if alg == "hmac-sha256":
        if not isinstance(key, bytes) or len(key) < HMAC_MIN_KEY_SIZE:
            raise UnsupportedAlgorithm(f"hmac-sha256 signs with a key of at least {HMAC_MIN_KEY_SIZE} bytes")
        return hmac.digest(key, base, "sha256")
    raise UnsupportedAlgorithm(f"signature algorithm {alg!r} is not one of {SIGNATURE_ALGORITHMS}")


def sign_request(
    request: HttpRequest,
    *,
    key: SigningKey,
    keyid: str,
    label: str = "sig1",
    components: Sequence[str] = ("@method", "@target-uri", "content-digest"),
    created: int,
    expires: int | None = None,
    nonce: str | None = None,
    tag: str | None = None,
    alg: str = "ed25519",
    include_alg: bool = True,
) -> dict[str, str]:
    """Sign ``request``; return the headers to add: ``Signature-Input``, ``Signature``, maybe ``Content-Digest``.

    ``Content-Digest`` (SHA-256 of the body) is made and returned when ``content-digest`` is covered
    and the request has none. Parameters are written in the order created, expires, keyid, nonce,
    alg, tag; ``include_alg=False`` leaves ``alg`` out (the verifier then takes it from the key).
    """
    added: dict[str, str] = {}
    items = [_component_item(spec) for spec in components]
    covers_digest = any(item.value == "content-digest" and not item.params for item in items)
    if covers_digest and request.header("content-digest") is None:
        added["Content-Digest"] = content_digest(request.body)
        request = HttpRequest(request.method, request.url, {**request.headers, **added}, request.body)
    params: dict[str, int | str | None] = {
        "created": created,
        "expires": expires,
        "keyid": keyid,
        "nonce": nonce,
        "alg": alg if include_alg else None,
        "tag": tag,
    }
    inner = InnerList(list(items))
    for name, value in params.items():
        if value is None:
            continue
        if type(value) is not _SIGNATURE_PARAMS[name]:
            raise MalformedSignatureHeader(
                f"signature parameter {name} must be {_SIGNATURE_PARAMS[name].__name__}"
            )
        inner.params[name] = value
    try:
        raw_params = str(inner)
        signature_input, signature = Dictionary(), Dictionary()
        signature_input[label] = inner
        signature_input_text = str(signature_input)
    except _SFV_ERRORS as exc:
        raise MalformedSignatureHeader(
            f"cannot serialize the signature parameters: {exc}", label=label
        ) from None
    base = _base(request, items, raw_params, label)
    signature[label] = _sign(alg, key, base)
    added["Signature-Input"] = signature_input_text
    added["Signature"] = str(signature)
    return added


# -- parsing ----------------------------------------------------------------------------------


class _DuplicateLabel(ValueError):
    pass


class _StrictDictionary(Dictionary):
    """A Dictionary that refuses a repeated key instead of keeping the last (labels must be unique)."""

    def __setitem__(self, key: str, value: AllItemType) -> None:
        if key in self.data:
            raise _DuplicateLabel(key)
        super().__setitem__(key, value)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    values = [value for key, value in headers.items() if key.lower() == name]
    return _combine_field(values) if values else None


def _parse_dictionary(field_name: str, text: str) -> Dictionary:
    if not isinstance(text, str):
        raise MalformedSignatureHeader(f"{field_name} must be a string, not {type(text).__name__}")
    if len(text) > MAX_SIGNATURE_HEADER_SIZE:
        raise MalformedSignatureHeader(
            f"{field_name} is {len(text)} characters, at most {MAX_SIGNATURE_HEADER_SIZE}"
        )
    dictionary = _StrictDictionary()
    try:
        dictionary.parse(text.encode("ascii"))
    except _SFV_ERRORS as exc:
        chain: list[BaseException] = [exc]
        while (cause := chain[-1].__cause__) is not None and len(chain) < 8:
            chain.append(cause)
        duplicate = next((e for e in chain if isinstance(e, _DuplicateLabel)), None)
        if duplicate is not None:
            raise MalformedSignatureHeader(f"{field_name} repeats the label {duplicate}") from None
        reason = next((str(e) for e in reversed(chain) if str(e)), type(exc).__name__)
        raise MalformedSignatureHeader(
            f"{field_name} is not a Structured Field Dictionary: {reason}"
        ) from None
    return dictionary


def _signature_input(label: str, member: object, signature: object) -> SignatureInput:
    if not isinstance(member, InnerList):
        raise MalformedSignatureHeader("Signature-Input member is not an Inner List", label=label)
    components = tuple(_check_identifier(item, label) for item in member)
    if len(set(map(str, member))) != len(components):
        raise MalformedSignatureHeader("a component is covered twice", label=label)
    values: dict[str, int | str] = {}
    for name, value in member.params.items():
        wanted = _SIGNATURE_PARAMS.get(name)
        if wanted is None:
            raise MalformedSignatureHeader(f"unknown signature parameter {name!r}", label=label)
        if (
            type(value) is not wanted
            or not isinstance(value, int | str)
            or (isinstance(value, int) and value < 0)
        ):
            kind = "non-negative Integer" if wanted is int else "String"
            raise MalformedSignatureHeader(f"signature parameter {name!r} must be a {kind}", label=label)
        values[name] = value
    if not isinstance(signature, Item) or type(signature.value) is not bytes or signature.params:
        raise MalformedSignatureHeader("Signature member is not a bare Byte Sequence", label=label)
    created, expires = values.get("created"), values.get("expires")
    keyid, alg, nonce, tag = (values.get(name) for name in ("keyid", "alg", "nonce", "tag"))
    return SignatureInput(
        label=label,
        components=components,
        keyid=keyid if isinstance(keyid, str) else None,
        alg=alg if isinstance(alg, str) else None,
        created=created if isinstance(created, int) else None,
        expires=expires if isinstance(expires, int) else None,
        nonce=nonce if isinstance(nonce, str) else None,
        tag=tag if isinstance(tag, str) else None,
        signature=signature.value,
        raw_params=str(member),
    )


def parse_signatures(headers: Mapping[str, str]) -> list[SignatureInput]:
    """Every signature in ``headers`` (names any case), in ``Signature-Input`` order; strict.

    No ``Signature-Input`` and no ``Signature`` gives ``[]``. One without the other, a label in one
    but not the other, a repeated label, a member of the wrong type, an unknown or mistyped
    parameter, or a value over :data:`MAX_SIGNATURE_HEADER_SIZE` raises
    :class:`MalformedSignatureHeader` naming the problem.
    """
    input_text, signature_text = _header(headers, "signature-input"), _header(headers, "signature")
    if input_text is None and signature_text is None:
        return []
    if input_text is None or signature_text is None:
        present, absent = (
            ("Signature", "Signature-Input") if input_text is None else ("Signature-Input", "Signature")
        )
        raise MalformedSignatureHeader(f"{present} is present but {absent} is not")
    fast = _fast_signature(input_text, signature_text)
    if fast is not None:
        return [fast]
    return _parse_signatures_fully(input_text, signature_text)


def _fast_signature(input_text: str, signature_text: str) -> SignatureInput | None:
    """The one signature of a canonically written pair of headers (``wallet/_sf_fast.py``), or
    ``None`` to take the full parser."""
    if len(input_text) > MAX_SIGNATURE_HEADER_SIZE or len(signature_text) > MAX_SIGNATURE_HEADER_SIZE:
        return None
    parsed, signed = _sf_fast.signature_input(input_text), _sf_fast.signature_bytes(signature_text)
    if parsed is None or signed is None or parsed[0] != signed[0]:
        return None
    label, components, params, raw = parsed
    if len(set(components)) != len(components) or not all(
        _FIELD_NAME.fullmatch(c) or _DERIVED_NAME.fullmatch(c) for c in components
    ):
        return None
    for name, value in params.items():
        wanted = _SIGNATURE_PARAMS.get(name)
        if wanted is None or type(value) is not wanted:
            return None
    created, expires = params.get("created"), params.get("expires")
    keyid, alg, nonce, tag = (params.get(name) for name in ("keyid", "alg", "nonce", "tag"))
    return SignatureInput(
        label=label,
        components=components,
        keyid=keyid if isinstance(keyid, str) else None,
        alg=alg if isinstance(alg, str) else None,
        created=created if isinstance(created, int) else None,
        expires=expires if isinstance(expires, int) else None,
        nonce=nonce if isinstance(nonce, str) else None,
        tag=tag if isinstance(tag, str) else None,
        signature=signed[1],
        raw_params=raw,
    )


FastSignature = tuple[
    tuple[str, ...], str, str | None, str | None, int | None, int | None, str | None, bytes, bytes
]
"""``(components, label, keyid, alg, created, expires, nonce, signature, signature base)``."""
_SHAPES: dict[str, tuple[str, ...] | None] = {}  # component list text -> names (None: not fast)
_SHAPES_KEPT: Final = 64  # a service sees a handful of shapes; more are not remembered
_DEVICE_COMPONENTS: Final = ("@method", "@target-uri", "content-digest")  # what devices sign
_DEVICE_INNER: Final = '"@method" "@target-uri" "content-digest"'  # those, as a component list
_UNKNOWN: Final = ("not yet seen",)  # a shape not in _SHAPES


def _shape(inner: str) -> tuple[str, ...] | None:
    """The component names of a fast request shape (``@method``, ``@target-uri``, fields; each once)."""
    names: tuple[str, ...] | None = tuple(item[1:-1] for item in inner.split(" ")) if inner else ()
    assert names is not None
    if len(set(names)) != len(names) or not all(
        n in ("@method", "@target-uri") or _FIELD_NAME.fullmatch(n) for n in names
    ):
        names = None
    if len(_SHAPES) < _SHAPES_KEPT:
        _SHAPES[inner] = names
    return names


def fast_signature_base(request: HttpRequest) -> FastSignature | None:
    """The one signature of ``request`` and its signature base, when its headers are written as
    :func:`sign_request` writes them (canonical, parameters in its order) and it covers only
    ``@method``, ``@target-uri`` and fields present on the request, with values fit for a base.

    Otherwise ``None``, and :func:`parse_signatures` with :func:`signature_base` decide. When not
    ``None``, it is exactly what they give (a property test holds them equal); ``created`` and
    ``expires`` as Integers. Nothing is verified, and the content digest is not checked.
    """
    headers = request.headers
    try:  # subscripts: a mapping proxy's get() is a method call on the mapping underneath
        text, signature_text = headers["signature-input"], headers["signature"]
    except KeyError:
        return None
    method, url = request.method, request.url
    if (
        len(text) > MAX_SIGNATURE_HEADER_SIZE
        or len(signature_text) > MAX_SIGNATURE_HEADER_SIZE
        or type(method) is not str
        or type(url) is not str
    ):
        return None
    signed = _sf_fast.REQUEST_SIGNATURE.fullmatch(signature_text)
    if signed is None:
        return None
    parsed = _sf_fast.DEVICE_INPUT.fullmatch(text)  # the label and components of devices, read quickly
    if parsed is not None:
        label, inner = "sig1", _DEVICE_INNER
        raw, created, expires, keyid, nonce, alg, _ = parsed.groups()
    else:
        parsed = _sf_fast.REQUEST_INPUT.fullmatch(text)
        if parsed is None:
            return None
        label, raw, inner, created, expires, keyid, nonce, alg, _ = parsed.groups()
    signed_label, encoded = signed.groups()
    if label != signed_label:
        return None
    try:  # the expression checked the alphabet: this is b64decode(validate=True)
        signature = binascii.a2b_base64(encoded)
    except binascii.Error:
        return None
    if inner == _DEVICE_INNER:  # the shape devices sign, written out in one go
        try:
            digest = headers["content-digest"]
        except KeyError:
            return None
        if "\n" in method or "\n" in url or "\n" in digest:
            return None  # a value with a line break: refused by signature_base
        names: tuple[str, ...] = _DEVICE_COMPONENTS
        base = (
            f'"@method": {method}\n"@target-uri": {url}\n"content-digest": {digest}\n'
            f'"@signature-params": {raw}'
        )
    else:
        shape = _SHAPES.get(inner, _UNKNOWN)
        if shape is _UNKNOWN:
            shape = _shape(inner)
        if shape is None:
            return None
        names = shape
        lines = []
        for name in names:
            value = method if name == "@method" else url if name == "@target-uri" else headers.get(name)
            if value is None or "\n" in value:
                return None
            lines.append(f'"{name}": {value}')
        lines.append(f'"@signature-params": {raw}')
        base = "\n".join(lines)
    if "\r" in base or not base.isascii():
        # a value with a carriage return or a non-ASCII character: refused by signature_base (the names
        # and the parameters, read by the expressions, hold neither, nor a line feed)
        return None
    return (
        names,
        label,
        keyid,
        alg,
        None if created is None else int(created),
        None if expires is None else int(expires),
        nonce,
        signature,
        base.encode("ascii"),
    )


def _parse_signatures_fully(input_text: str, signature_text: str) -> list[SignatureInput]:
    """The full (``http_sfv``) parse of both headers."""
    inputs = _parse_dictionary("Signature-Input", input_text)
    signatures = _parse_dictionary("Signature", signature_text)
    for label in signatures:
        if label not in inputs:
            raise MalformedSignatureHeader("Signature has no matching Signature-Input", label=label)
    result: list[SignatureInput] = []
    for label, member in inputs.items():
        if label not in signatures:
            raise MalformedSignatureHeader("Signature-Input has no matching Signature", label=label)
        result.append(_signature_input(label, member, signatures[label]))
    return result


# -- verification -----------------------------------------------------------------------------


def verify_signature(request: HttpRequest, sig: SignatureInput, key: VerifyingKey) -> None:
    """Check ``sig`` over ``request`` with ``key``; raise a typed error unless it verifies.

    An :class:`Ed25519PublicKey` means ``ed25519``, bytes mean ``hmac-sha256``; an ``alg`` parameter
    naming another algorithm raises :class:`UnsupportedAlgorithm` or :class:`SignatureMismatch`.
    When ``content-digest`` is covered, the body is then checked against it (RFC 9530).
    """
    if isinstance(key, Ed25519PublicKey):
        alg = "ed25519"
    elif isinstance(key, bytes):
        alg = "hmac-sha256"
    else:
        raise UnsupportedAlgorithm(f"no signature algorithm for a {type(key).__name__} key", label=sig.label)
    if sig.alg is not None and sig.alg not in SIGNATURE_ALGORITHMS:
        raise UnsupportedAlgorithm(f"signature algorithm {sig.alg!r} is not supported", label=sig.label)
    if sig.alg is not None and sig.alg != alg:
        raise SignatureMismatch(
            f"the signature says alg {sig.alg!r} but the key is for {alg}", label=sig.label
        )
    base = signature_base(request, sig)
    if isinstance(key, Ed25519PublicKey):
        try:
            key.verify(base, sig.signature)
        except BadSignature:
            raise SignatureMismatch("ed25519 signature does not verify", label=sig.label) from None
    else:
        if len(key) < HMAC_MIN_KEY_SIZE:
            raise UnsupportedAlgorithm(
                f"hmac-sha256 keys are at least {HMAC_MIN_KEY_SIZE} bytes", label=sig.label
            )
        if not hmac.compare_digest(hmac.digest(key, base, "sha256"), sig.signature):
            raise SignatureMismatch("hmac-sha256 signature does not verify", label=sig.label)
    if "content-digest" in sig.components:
        value = request.header("content-digest")
        assert value is not None  # covered, so the signature base needed it
        verify_content_digest(value, request.body)
