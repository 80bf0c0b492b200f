"""DID and DID URL syntax (DID Core §3.1, §3.2)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.errors import InvalidDID
from did_registry.identity.did import (
    DID,
    DIDURL,
    is_did,
    parse_did,
    parse_did_url,
    resolve_relative,
)

VALID_DIDS = [
    ("did:example:123456789abcdefghi", "example", "123456789abcdefghi"),
    (
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
        "key",
        "z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
    ),
    ("did:trellis:main-net:LeeSNtAvGgEYGxjDCvrdVB", "trellis", "main-net:LeeSNtAvGgEYGxjDCvrdVB"),
    ("did:a:b", "a", "b"),
    ("did:web3:x", "web3", "x"),
    ("did:123:x", "123", "x"),
    ("did:ex::a", "ex", ":a"),
    ("did:ex:a::b", "ex", "a::b"),
    ("did:ex:%41%5a%5A", "ex", "%41%5a%5A"),
    ("did:ex:A.b-c_d", "ex", "A.b-c_d"),
    ("did:ex:.", "ex", "."),
]

INVALID_DIDS = [
    ("", "empty string"),
    ("did", "does not start with 'did:'"),
    ("urn:ex:123", "does not start with 'did:'"),
    ("DID:ex:123", "lowercase 'did:'"),
    ("Did:ex:123", "lowercase 'did:'"),
    ("did:", "empty method name"),
    ("did::123", "empty method name"),
    ("did:Example:123", "uppercase letter 'E' at position 4"),
    ("did:exAmple:123", "uppercase letter 'A' at position 6"),
    ("did:ex-ample:123", "character '-' not allowed at position 6 in the method name"),
    ("did:ex_1:123", "character '_' not allowed at position 6 in the method name"),
    ("did:ex", "no ':' after the method name"),
    ("did:ex:", "empty method-specific-id"),
    ("did:ex:123:", "trailing colon"),
    ("did:ex:a::", "trailing colon"),
    ("did:ex:a b", "character ' ' not allowed at position 8 in the method-specific-id"),
    ("did:ex:a@b", "character '@' not allowed at position 8"),
    ("did:ex:é", "character 'é' not allowed at position 7"),
    ("did:ex:a%", "bad percent-encoding '%' at position 8"),
    ("did:ex:a%4", "bad percent-encoding '%4' at position 8"),
    ("did:ex:a%4g", "bad percent-encoding '%4g' at position 8"),
    ("did:ex:%%41", "bad percent-encoding"),
]


class TestDIDSyntax:
    @pytest.mark.parametrize(("text", "method", "msi"), VALID_DIDS)
    def test_parses_valid_did(self, text: str, method: str, msi: str) -> None:
        """If a string follows the DID ABNF, its method and method-specific-id are split out."""
        did = parse_did(text)
        assert (did.method, did.method_specific_id, str(did)) == (method, msi, text)
        assert is_did(text)

    @pytest.mark.parametrize(("text", "reason"), INVALID_DIDS)
    def test_refuses_invalid_did_with_reason(self, text: str, reason: str) -> None:
        """If a string breaks the DID ABNF, InvalidDID says exactly what is wrong."""
        with pytest.raises(InvalidDID) as info:
            parse_did(text)
        assert reason in info.value.reason
        assert info.value.value == text
        assert not is_did(text)

    @pytest.mark.parametrize(("text", "reason"), INVALID_DIDS)
    def test_did_url_parser_refuses_the_same(self, text: str, reason: str) -> None:
        """If the DID part is invalid, the DID URL parser gives the same reason."""
        with pytest.raises(InvalidDID) as info:
            parse_did_url(text)
        assert reason in info.value.reason

    @pytest.mark.parametrize("text", ["did:ex:1#key-1", "did:ex:1/path", "did:ex:1?versionId=2"])
    def test_did_parser_refuses_did_url(self, text: str) -> None:
        """If a DID URL is given where a DID is expected, the error says to parse it as a DID URL."""
        with pytest.raises(InvalidDID, match="parse it as a DID URL"):
            parse_did(text)

    @pytest.mark.parametrize("value", [None, 42, b"did:ex:1", ["did:ex:1"]])
    def test_refuses_non_strings(self, value: object) -> None:
        """If the value is not a string, InvalidDID names its type."""
        with pytest.raises(InvalidDID, match="must be a string"):
            parse_did(value)  # type: ignore[arg-type]
        assert not is_did(value)

    def test_invalid_did_is_a_value_error(self) -> None:
        """If parsing fails, the error is also a ValueError."""
        with pytest.raises(ValueError):
            parse_did("did:Ex:1")

    def test_constructor_validates(self) -> None:
        """If DID is built from parts, the parts are validated like a parsed string."""
        assert DID("ex", "a:b") == parse_did("did:ex:a:b")
        with pytest.raises(InvalidDID, match="uppercase"):
            DID("Ex", "1")
        with pytest.raises(InvalidDID, match="trailing colon"):
            DID("ex", "a:")

    def test_equality_and_hash_follow_the_string(self) -> None:
        """If two DIDs have the same text they are equal and hash alike; otherwise they differ."""
        assert parse_did("did:ex:1") == DID("ex", "1")
        assert len({parse_did("did:ex:1"), DID("ex", "1"), parse_did("did:ex:2")}) == 2
        assert parse_did("did:ex:%41") != parse_did("did:ex:A")

    def test_static_parse_matches_function(self) -> None:
        """If DID.parse is used, it gives the same value as parse_did."""
        assert DID.parse("did:ex:1") == parse_did("did:ex:1")

    def test_pathological_input_is_linear(self) -> None:
        """If an attacker sends a huge almost-valid DID, refusing it stays fast (no backtracking)."""
        hostile = "did:ex:" + "a:" * 50_000 + "!"
        start = time.perf_counter()
        with pytest.raises(InvalidDID, match="character '!'"):
            parse_did_url(hostile)
        assert time.perf_counter() - start < 1.0


VALID_URLS = [
    ("did:ex:1#key-1", "", None, "key-1"),
    ("did:ex:1#", "", None, ""),
    ("did:ex:1/", "/", None, None),
    ("did:ex:1/path/to/x", "/path/to/x", None, None),
    ("did:ex:1//double", "//double", None, None),
    ("did:ex:1/p;a=b@c:d", "/p;a=b@c:d", None, None),
    ("did:ex:1?versionId=3", "", "versionId=3", None),
    ("did:ex:1?", "", "", None),
    ("did:ex:1?service=files&relativeRef=%2Fa%2Fb", "", "service=files&relativeRef=%2Fa%2Fb", None),
    ("did:ex:1/p?q=1#f", "/p", "q=1", "f"),
    ("did:ex:1?a/b?c#d/e?f", "", "a/b?c", "d/e?f"),
    ("did:ex:1#%20", "", None, "%20"),
    ("did:ex:a:b/c#d", "/c", None, "d"),
]

INVALID_URLS = [
    ("did:ex:1#a#b", "character '#' not allowed at position 10 in the fragment"),
    ("did:ex:1/a b", "character ' ' not allowed at position 10 in the path"),
    ("did:ex:1?a b", "character ' ' not allowed at position 10 in the query"),
    ("did:ex:1/%zz", "bad percent-encoding '%zz' at position 9 in the path"),
    ("did:ex:1?x=%", "bad percent-encoding '%' at position 11 in the query"),
    ("did:ex:1#[0]", "character '[' not allowed"),
    ("did:ex:1:/p", "trailing colon"),
    ("did:ex:/p", "empty method-specific-id"),
    ("did:ex:1#\u00e9", "character 'é' not allowed"),
]


class TestDIDURLSyntax:
    @pytest.mark.parametrize(("text", "path", "query", "fragment"), VALID_URLS)
    def test_parses_components(self, text: str, path: str, query: str | None, fragment: str | None) -> None:
        """If a DID URL is valid, its DID, path, query and fragment are split out."""
        url = parse_did_url(text)
        assert (url.path, url.query, url.fragment) == (path, query, fragment)
        assert str(url) == text
        assert str(url.did) == text.split("/")[0].split("?")[0].split("#")[0]

    @pytest.mark.parametrize(("text", "reason"), INVALID_URLS)
    def test_refuses_invalid_url_with_reason(self, text: str, reason: str) -> None:
        """If a DID URL breaks RFC 3986 in path, query or fragment, the error names the part and position."""
        with pytest.raises(InvalidDID) as info:
            parse_did_url(text)
        assert reason in info.value.reason

    def test_bare_did_is_a_did_url(self) -> None:
        """If a DID URL has no path, query or fragment, it is a bare DID."""
        assert parse_did_url("did:ex:1").is_bare_did
        assert not parse_did_url("did:ex:1#k").is_bare_did

    def test_params_are_percent_decoded(self) -> None:
        """If the query has parameters, params decodes names and values."""
        url = parse_did_url("did:ex:1?service=files&relativeRef=%2Fa%2Fb&flag")
        assert dict(url.params) == {"service": "files", "relativeRef": "/a/b", "flag": ""}
        assert dict(parse_did_url("did:ex:1").params) == {}

    def test_params_refuse_duplicate_names(self) -> None:
        """If a query parameter appears twice, params refuses rather than guessing which one holds."""
        url = parse_did_url("did:ex:1?versionId=1&versionId=2")
        with pytest.raises(InvalidDID, match="'versionId' appears more than once"):
            _ = url.params

    def test_params_refuse_non_utf8(self) -> None:
        """If a percent-encoded parameter is not UTF-8, params refuses it."""
        with pytest.raises(InvalidDID, match="not UTF-8"):
            _ = parse_did_url("did:ex:1?v=%ff").params

    def test_constructor_round_trips(self) -> None:
        """If a DIDURL is built from parts, it equals the parsed string."""
        url = DIDURL(parse_did("did:ex:1"), "/p", "q=1", "f")
        assert url == parse_did_url("did:ex:1/p?q=1#f")
        assert str(url) == "did:ex:1/p?q=1#f"
        assert hash(url) == hash(parse_did_url("did:ex:1/p?q=1#f"))

    @pytest.mark.parametrize(
        ("path", "query", "fragment"),
        [("p", None, None), ("", None, "a#b"), ("", "a#b", None), ("/a b", None, None)],
    )
    def test_constructor_refuses_parts_that_do_not_recompose(
        self, path: str, query: str | None, fragment: str | None
    ) -> None:
        """If the parts would not parse back into themselves, the constructor refuses them."""
        with pytest.raises(InvalidDID):
            DIDURL(parse_did("did:ex:1"), path, query, fragment)

    def test_with_fragment(self) -> None:
        """If a fragment is added to a DID, the result is the DID URL <did>#<fragment>."""
        assert parse_did("did:ex:1").with_fragment("key-1") == parse_did_url("did:ex:1#key-1")


class TestRelativeResolution:
    @pytest.mark.parametrize(
        ("reference", "expected"),
        [
            ("#key-1", "did:ex:123#key-1"),
            ("?versionId=2", "did:ex:123?versionId=2"),
            ("/path#x", "did:ex:123/path#x"),
            ("did:other:9#key-1", "did:other:9#key-1"),
        ],
    )
    def test_resolves_against_base(self, reference: str, expected: str) -> None:
        """If a reference is relative, it is appended to the base DID; if absolute, kept."""
        assert str(resolve_relative(reference, parse_did("did:ex:123"))) == expected
        assert str(resolve_relative(reference, "did:ex:123")) == expected

    @pytest.mark.parametrize("reference", ["key-1", "./key", "", "http://example.com#k"])
    def test_refuses_other_relative_references(self, reference: str) -> None:
        """If a reference starts with neither '#', '?', '/' nor 'did:', it is refused."""
        with pytest.raises(InvalidDID, match="must start with"):
            resolve_relative(reference, "did:ex:123")

    def test_refuses_invalid_fragment(self) -> None:
        """If the resolved DID URL is invalid, the error says where."""
        with pytest.raises(InvalidDID, match="fragment"):
            resolve_relative("#a b", "did:ex:123")


# --- property-based round trips, generated from the ABNF -------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_pct = st.tuples(st.sampled_from("0123456789abcdefABCDEF"), st.sampled_from("0123456789abcdefABCDEF")).map(
    lambda p: "%" + "".join(p)
)
_idchar = st.one_of(st.sampled_from(_ALNUM + ".-_"), _pct)
_pchar = st.one_of(st.sampled_from(_ALNUM + ".-_~!$&'()*+,;=:@"), _pct)
methods = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
_segment = st.lists(_idchar, max_size=8).map("".join)
method_specific_ids = st.tuples(
    st.lists(_segment, max_size=4), st.lists(_idchar, min_size=1, max_size=12).map("".join)
).map(lambda parts: "".join(f"{s}:" for s in parts[0]) + parts[1])
dids = st.tuples(methods, method_specific_ids).map(lambda p: f"did:{p[0]}:{p[1]}")
paths = st.lists(st.lists(_pchar, max_size=6).map("".join), max_size=4).map(
    lambda segs: "".join(f"/{s}" for s in segs)
)
_qchars = st.lists(st.one_of(_pchar, st.sampled_from("/?")), max_size=10).map("".join)
queries = st.one_of(st.none(), _qchars)
fragments = st.one_of(st.none(), _qchars)


@given(dids)
def test_did_round_trip(text: str) -> None:
    """If a DID is generated from the grammar, it parses and prints back to the same string."""
    did = parse_did(text)
    assert str(did) == text
    assert DID(did.method, did.method_specific_id) == did
    assert parse_did(str(did)) == did


@given(dids, paths, queries, fragments)
def test_did_url_round_trip(did: str, path: str, query: str | None, fragment: str | None) -> None:
    """If a DID URL is generated from the grammar, it parses into its parts and prints back."""
    text = (
        did
        + path
        + (f"?{query}" if query is not None else "")
        + (f"#{fragment}" if fragment is not None else "")
    )
    url = parse_did_url(text)
    assert (str(url.did), url.path, url.query, url.fragment) == (did, path, query, fragment)
    assert str(url) == text
    assert DIDURL(url.did, path, query, fragment) == url


@given(dids, st.text(min_size=1, max_size=3).filter(lambda s: any(c not in _ALNUM + ".-_%:" for c in s)))
def test_foreign_characters_are_refused(did: str, junk: str) -> None:
    """If characters outside idchar are appended to the method-specific-id, parsing a DID fails."""
    with pytest.raises(InvalidDID):
        parse_did(did + junk)
