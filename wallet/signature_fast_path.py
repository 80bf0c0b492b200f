"""The fast path: a request's one signature and its signature base in one step, for a verifier.

:func:`fast_signature_base` reads headers written as :func:`~wallet.http_signatures.sign_request`
writes them (the expressions of ``wallet/_sf_fast.py``) and writes the base of the shapes services
see (the one devices sign written out in one go); it gives exactly what
:func:`~wallet.signature_fields.parse_signatures` with
:func:`~wallet.message_components.signature_base` give, or ``None`` to leave the request to them.
Part of :mod:`wallet.http_signatures`, which re-exports the public names.
"""

from __future__ import annotations

import binascii
from typing import Final

from wallet import _sf_fast
from wallet.http_message import HttpRequest
from wallet.message_components import _FIELD_NAME
from wallet.signature_fields import MAX_SIGNATURE_HEADER_SIZE

__all__ = [
    "FastSignature",
    "fast_signature_base",
]

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
