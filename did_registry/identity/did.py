"""DIDs and DID URLs: W3C DID Core 1.0 §3.1 (DID syntax) and §3.2 (DID URL syntax).

The grammar (DID Core ABNF, with RFC 3986 for path, query and fragment)::

    did                = "did:" method-name ":" method-specific-id
    method-name        = 1*method-char
    method-char        = %x61-7A / DIGIT
    method-specific-id = *( *idchar ":" ) 1*idchar
    idchar             = ALPHA / DIGIT / "." / "-" / "_" / pct-encoded
    pct-encoded        = "%" HEXDIG HEXDIG
    did-url            = did path-abempty [ "?" query ] [ "#" fragment ]

Parsing is on the verifier's hot path: one compiled regular expression with possessive quantifiers
(linear time, no backtracking blow-up) accepts the valid strings, and results are cached. Only a
string the expression refuses goes through the slow diagnosis that names exactly what is wrong.
Relative DID URLs (§3.2.2: ``#key-1``, ``?service=x``, ``/path``) are resolved against a base DID.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Final
from urllib.parse import unquote

from did_registry.errors import InvalidDID

__all__ = ["DID", "DIDURL", "is_did", "parse_did", "parse_did_url", "resolve_relative"]

_HEX = "0123456789abcdefABCDEF"
_IDCHAR_SET: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_")
_PCHAR_SET: Final = _IDCHAR_SET | frozenset("~!$&'()*+,;=:@")
_QUERY_SET: Final = _PCHAR_SET | frozenset("/?")

_PCT = r"%[0-9A-Fa-f]{2}"
_MSI = rf"(?:[A-Za-z0-9._:-]|{_PCT})++(?<!:)"
_PCHAR = rf"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|{_PCT})"
_DID_RE = re.compile(rf"did:([a-z0-9]++):({_MSI})")
_DID_URL_RE = re.compile(
    rf"did:([a-z0-9]++):({_MSI})((?:/{_PCHAR}*+)*+)(?:\?((?:{_PCHAR}|[/?])*+))?(?:#((?:{_PCHAR}|[/?])*+))?"
)


def _check_chars(value: str, start: int, end: int, allowed: frozenset[str], part: str) -> None:
    """Raise on the first character of ``value[start:end]`` outside ``allowed`` or a bad ``%XX``."""
    i = start
    while i < end:
        char = value[i]
        if char == "%":
            pair = value[i + 1 : min(i + 3, end)]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise InvalidDID(
                    value,
                    f"bad percent-encoding {value[i : i + 1 + len(pair)]!r} at position {i} in the"
                    f" {part} ('%' must be followed by two hexadecimal digits)",
                )
            i += 3
            continue
        if char not in allowed:
            raise InvalidDID(value, f"character {char!r} not allowed at position {i} in the {part}")
        i += 1


def _diagnose(value: object, *, url: bool) -> InvalidDID:
    """Explain why ``value`` is not a DID (or DID URL); only called once the fast path refused it."""
    if not isinstance(value, str):
        return InvalidDID(repr(value), f"a DID must be a string, not {type(value).__name__}")
    if not value:
        return InvalidDID(value, "empty string")
    if not value.startswith("did:"):
        if value[:4].lower() == "did:":
            return InvalidDID(value, "the scheme must be lowercase 'did:'")
        return InvalidDID(value, "does not start with 'did:'")
    colon = value.find(":", 4)
    method_end = colon if colon != -1 else len(value)
    if method_end == 4:
        return InvalidDID(value, "empty method name")
    for i in range(4, method_end):
        char = value[i]
        if "A" <= char <= "Z":
            return InvalidDID(value, f"uppercase letter {char!r} at position {i} in the method name")
        if not ("a" <= char <= "z" or "0" <= char <= "9"):
            return InvalidDID(value, f"character {char!r} not allowed at position {i} in the method name")
    if colon == -1:
        return InvalidDID(value, "no ':' after the method name (expected did:<method>:<id>)")
    stop = min((i for i in (value.find(c, colon) for c in "/?#") if i != -1), default=len(value))
    try:
        if stop == colon + 1:
            raise InvalidDID(value, "empty method-specific-id")
        _check_chars(value, colon + 1, stop, _IDCHAR_SET | {":"}, "method-specific-id")
        if value[stop - 1] == ":":
            raise InvalidDID(value, "method-specific-id ends with ':' (trailing colon)")
        if stop == len(value):
            raise InvalidDID(value, "does not follow the DID syntax")
        if not url:
            raise InvalidDID(
                value,
                f"a DID has no path, query or fragment ({value[stop]!r} at position {stop});"
                " parse it as a DID URL",
            )
        query = value.find("?", stop)
        hash_ = value.find("#", stop)
        if query > hash_ != -1:
            query = -1
        path_end = min((i for i in (query, hash_) if i != -1), default=len(value))
        _check_chars(value, stop, path_end, _PCHAR_SET | {"/"}, "path")
        if query != -1:
            _check_chars(value, query + 1, hash_ if hash_ != -1 else len(value), _QUERY_SET, "query")
        if hash_ != -1:
            _check_chars(value, hash_ + 1, len(value), _QUERY_SET, "fragment")
    except InvalidDID as exc:
        return exc
    return InvalidDID(value, "does not follow the DID URL syntax")


@dataclass(frozen=True, slots=True)
class DID:
    """A DID (DID Core §3.1): ``did:<method>:<method-specific-id>``, compared by its exact string."""

    method: str
    method_specific_id: str
    _text: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = f"did:{self.method}:{self.method_specific_id}"
        if _DID_RE.fullmatch(text) is None:
            raise _diagnose(text, url=False)
        object.__setattr__(self, "_text", text)

    @staticmethod
    def parse(value: str) -> DID:
        """Parse a DID; raise :class:`InvalidDID` naming what is wrong."""
        return parse_did(value)

    def __str__(self) -> str:
        return self._text

    def with_fragment(self, fragment: str) -> DIDURL:
        """Return the DID URL ``<did>#<fragment>``."""
        return parse_did_url(f"{self._text}#{fragment}")


def parse_did(value: str) -> DID:
    """Parse a DID (not a DID URL); raise :class:`InvalidDID` naming what is wrong."""
    if not isinstance(value, str):
        raise _diagnose(value, url=False)
    return _parse_did(value)


@lru_cache(maxsize=8192)
def _parse_did(value: str) -> DID:
    match = _DID_RE.fullmatch(value)
    if match is None:
        raise _diagnose(value, url=False)
    did = DID.__new__(DID)
    object.__setattr__(did, "method", match[1])
    object.__setattr__(did, "method_specific_id", match[2])
    object.__setattr__(did, "_text", value)
    return did


def is_did(value: object) -> bool:
    """Return whether ``value`` is a string that is a DID (no path, query or fragment)."""
    return isinstance(value, str) and _DID_RE.fullmatch(value) is not None


def _parse_query(value: str, query: str) -> MappingProxyType[str, str]:
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, param = pair.partition("=")
        name = unquote(name, errors="strict")
        if name in params:
            raise InvalidDID(value, f"query parameter {name!r} appears more than once")
        params[name] = unquote(param, errors="strict")
    return MappingProxyType(params)


_EMPTY: Final[MappingProxyType[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DIDURL:
    """A DID URL (DID Core §3.2): a DID with optional path, query and fragment, compared as a string."""

    did: DID
    path: str = ""
    query: str | None = None
    fragment: str | None = None
    _text: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = self._compose()
        parsed = parse_did_url(text)
        if (parsed.path, parsed.query, parsed.fragment) != (self.path, self.query, self.fragment):
            raise InvalidDID(text, "path, query and fragment do not recompose into this DID URL")
        object.__setattr__(self, "_text", text)

    def _compose(self) -> str:
        text = f"{self.did}{self.path}"
        if self.query is not None:
            text += f"?{self.query}"
        if self.fragment is not None:
            text += f"#{self.fragment}"
        return text

    @staticmethod
    def parse(value: str) -> DIDURL:
        """Parse a DID URL; raise :class:`InvalidDID` naming what is wrong."""
        return parse_did_url(value)

    def __str__(self) -> str:
        return self._text

    @property
    def params(self) -> MappingProxyType[str, str]:
        """The query as a read-only map of percent-decoded parameters (DID Core §3.2.1).

        Raises :class:`InvalidDID` when a parameter appears twice (an ambiguous ``versionId`` is
        refused rather than guessed) or a percent-encoded byte sequence is not UTF-8.
        """
        if not self.query:
            return _EMPTY
        try:
            return _parse_query(self._text, self.query)
        except UnicodeDecodeError:
            raise InvalidDID(self._text, "percent-encoded query is not UTF-8") from None

    @property
    def is_bare_did(self) -> bool:
        """Whether this DID URL is just the DID (no path, query or fragment)."""
        return not self.path and self.query is None and self.fragment is None


def parse_did_url(value: str) -> DIDURL:
    """Parse a DID URL (a DID alone is one too); raise :class:`InvalidDID` naming what is wrong."""
    if not isinstance(value, str):
        raise _diagnose(value, url=True)
    return _parse_did_url(value)


@lru_cache(maxsize=8192)
def _parse_did_url(value: str) -> DIDURL:
    match = _DID_URL_RE.fullmatch(value)
    if match is None:
        raise _diagnose(value, url=True)
    method, msi, path, query, fragment = match.groups()
    did_len = 5 + len(method) + len(msi)
    did = _parse_did(value[:did_len])
    url = DIDURL.__new__(DIDURL)
    for name, item in (
        ("did", did),
        ("path", path),
        ("query", query),
        ("fragment", fragment),
        ("_text", value),
    ):
        object.__setattr__(url, name, item)
    return url


def resolve_relative(reference: str, base: DID | str) -> DIDURL:
    """Resolve a DID URL reference against ``base`` (DID Core §3.2.2).

    An absolute DID URL is returned as parsed; ``#fragment``, ``?query`` and ``/path`` references
    are appended to the base DID (whose path is empty, so RFC 3986 §5.2 reduces to that). Any other
    relative reference is refused.
    """
    if not isinstance(reference, str):
        raise InvalidDID(repr(reference), f"a DID URL must be a string, not {type(reference).__name__}")
    if reference.startswith("did:"):
        return parse_did_url(reference)
    if reference[:1] in ("#", "?", "/"):
        return parse_did_url(f"{base}{reference}")
    raise InvalidDID(
        reference,
        "a relative DID URL must start with '#', '?' or '/' (or be an absolute 'did:' URL)",
    )
