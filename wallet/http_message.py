"""The HTTP message that signatures cover (RFC 9421 §1.1), and one signature read from it.

:class:`HttpRequest` holds a request's method, target URI, fields (combined as repeated field lines
are, §2.1) and body; :class:`SignatureInput` one signature of it, as read from ``Signature-Input`` and
``Signature`` (:mod:`wallet.signature_fields`). :func:`split_url` splits a target URI without keeping
long ones in the standard library's cache. Part of :mod:`wallet.http_signatures`, which re-exports
these names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "SPLIT_CACHED_MAX",
    "HttpRequest",
    "SignatureInput",
    "split_url",
]

SPLIT_CACHED_MAX: Final = 2048
"""The longest URL :func:`split_url` lets the standard library's cache keep."""
_urlsplit_uncached: Callable[[str], SplitResult] = getattr(urlsplit, "__wrapped__", urlsplit)


def split_url(url: str) -> SplitResult:
    """:func:`urllib.parse.urlsplit`, but a URL longer than :data:`SPLIT_CACHED_MAX` characters is
    split without the standard library's cache (CPython keeps the last 128 URLs split, whatever their
    length: a sender's long URLs would stay in memory)."""
    return urlsplit(url) if len(url) <= SPLIT_CACHED_MAX else _urlsplit_uncached(url)


_OBS_FOLD = re.compile(r"\r\n[ \t]+")


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
