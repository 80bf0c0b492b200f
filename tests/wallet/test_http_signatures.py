"""HTTP Message Signatures (RFC 9421): signature bases, signing, strict parsing and verification."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from did_registry.identity.crypto import Ed25519PrivateKey
from wallet.content_digest import content_digest
from wallet.errors import (
    DigestMismatch,
    HttpSignatureError,
    MalformedSignatureHeader,
    MissingComponent,
    SignatureMismatch,
    UnsupportedAlgorithm,
    UnsupportedComponent,
)
from wallet.http_signatures import (
    MAX_SIGNATURE_HEADER_SIZE,
    HttpRequest,
    SignatureInput,
    parse_signatures,
    sign_request,
    signature_base,
    verify_signature,
)

CONFORMANCE = Path("/work/shared/conformance/rfc9421")
B26: dict[str, Any] = json.loads((CONFORMANCE / "b26.json").read_text())
# RFC 9421 Appendix B.1.5 test-shared-secret (64 bytes, base64) and B.2.5 "Signing a Request Using hmac-sha256".
TEST_SHARED_SECRET = base64.b64decode(
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ=="
)
B25_INPUT = 'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"'
B25_SIGNATURE = "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"
B25_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"@signature-params": ("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"'
)


def _test_request() -> HttpRequest:
    """The RFC 9421 Appendix B.2 test-request, read from the conformance file."""
    lines = (CONFORMANCE / "test-request.http").read_text().split("\n")
    method, target, _ = lines[0].split(" ")
    end = lines.index("")
    fields = [(name, value) for name, _, value in (line.partition(": ") for line in lines[1:end])]
    host = dict(fields)["Host"]
    body = "\n".join(lines[end + 1 :]).rstrip("\n").encode()
    return HttpRequest.from_fields(method, f"https://{host}{target}", fields, body)


def _b26_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey(bytes.fromhex(B26["privateKeySeedHex"]))


def _one(headers: dict[str, str]) -> SignatureInput:
    (sig,) = parse_signatures(headers)
    return sig


# -- conformance ------------------------------------------------------------------------------


class TestRfc9421Vectors:
    """Appendix B.2.6 (ed25519) and B.2.5 (hmac-sha256) over the B.2 test-request."""

    def test_test_request_file_matches_json(self) -> None:
        """The .http and .json forms of the test-request agree (the fixture itself is right)."""
        request = _test_request()
        assert request.url == B26["request"]["targetUri"]
        assert request.body == B26["request"]["body"].encode()

    def test_b26_signature_base_is_byte_exact(self) -> None:
        """The B.2.6 signature base is reproduced byte for byte."""
        sig = _one({"Signature-Input": B26["signatureInput"], "Signature": B26["signature"]})
        expected = (CONFORMANCE / "b26-signature-base.txt").read_bytes()
        assert signature_base(_test_request(), sig) == expected

    def test_the_published_key_files_hold_the_b26_key(self) -> None:
        """The PEM (PKCS #8 and SPKI, RFC 8410) and JWK (RFC 8037) forms of the RFC's test key are the
        seed and public key the B.2.6 vector signs with."""
        pem = (CONFORMANCE / "test-key-ed25519.pem").read_text()
        blocks = {
            label: base64.b64decode("".join(body.split()))
            for label, body in re.findall(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", pem, re.S)
        }
        key = _b26_key()
        spki_prefix, pkcs8_prefix = (
            bytes.fromhex("302a300506032b6570032100"),
            bytes.fromhex("302e020100300506032b657004220420"),
        )
        assert blocks["PUBLIC KEY"] == spki_prefix + bytes(key.public_key)
        assert blocks["PRIVATE KEY"] == pkcs8_prefix + bytes.fromhex(B26["privateKeySeedHex"])
        jwk = json.loads((CONFORMANCE / "test-key-ed25519.jwk.json").read_text())
        assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
        assert base64.urlsafe_b64decode(jwk["d"] + "=") == bytes.fromhex(B26["privateKeySeedHex"])
        assert base64.urlsafe_b64decode(jwk["x"] + "=") == bytes(key.public_key)

    def test_b26_signature_verifies(self) -> None:
        """The published B.2.6 signature verifies with the B.1.4 public key."""
        sig = _one({"Signature-Input": B26["signatureInput"], "Signature": B26["signature"]})
        assert sig.signature.hex() == B26["signatureHex"]
        verify_signature(_test_request(), sig, _b26_key().public_key)

    def test_b26_headers_are_reproduced(self) -> None:
        """Signing the test-request as B.2.6 does gives the published header values exactly."""
        headers = sign_request(
            _test_request(),
            key=_b26_key(),
            keyid=B26["keyid"],
            label=B26["label"],
            components=B26["coveredComponents"],
            created=B26["params"]["created"],
            include_alg=False,
        )
        published = dict(
            line.split(": ", 1)
            for line in (CONFORMANCE / "b26-signature-headers.txt").read_text().splitlines()
        )
        assert headers == published

    def test_b26_signature_refused_with_other_key(self) -> None:
        """The B.2.6 signature does not verify under another Ed25519 key."""
        sig = _one({"Signature-Input": B26["signatureInput"], "Signature": B26["signature"]})
        with pytest.raises(SignatureMismatch):
            verify_signature(_test_request(), sig, Ed25519PrivateKey.generate().public_key)

    def test_b25_signature_base_and_verify(self) -> None:
        """The B.2.5 hmac-sha256 base is reproduced and its signature verifies with test-shared-secret."""
        sig = _one({"Signature-Input": B25_INPUT, "Signature": B25_SIGNATURE})
        assert signature_base(_test_request(), sig) == B25_BASE.encode()
        verify_signature(_test_request(), sig, TEST_SHARED_SECRET)

    def test_b25_headers_are_reproduced(self) -> None:
        """Signing the test-request as B.2.5 does gives the published header values exactly."""
        headers = sign_request(
            _test_request(),
            key=TEST_SHARED_SECRET,
            keyid="test-shared-secret",
            label="sig-b25",
            components=("date", "@authority", "content-type"),
            created=1618884473,
            alg="hmac-sha256",
            include_alg=False,
        )
        assert headers == {"Signature-Input": B25_INPUT, "Signature": B25_SIGNATURE}


# -- derived components and fields ------------------------------------------------------------


def _base_of(request: HttpRequest, component: str) -> str:
    """The signature base line of one component, by signing and reading the base back."""
    headers = sign_request(
        request, key=b"k" * 32, keyid="k", components=[component], created=1, alg="hmac-sha256"
    )
    return signature_base(request, _one(headers)).decode().split("\n")[0]


class TestComponents:
    """Component values (RFC 9421 §2.1, §2.2)."""

    @pytest.mark.parametrize(
        ("url", "component", "line"),
        [
            (
                "https://www.example.com/path?param=value",
                "@target-uri",
                '"@target-uri": https://www.example.com/path?param=value',
            ),
            ("https://www.example.com/path?param=value", "@authority", '"@authority": www.example.com'),
            ("https://WWW.Example.com:443/p", "@authority", '"@authority": www.example.com'),
            ("http://example.com:80/p", "@authority", '"@authority": example.com'),
            ("https://example.com:8443/p", "@authority", '"@authority": example.com:8443'),
            ("https://user@example.com/p", "@authority", '"@authority": example.com'),
            ("https://[::1]:8443/p", "@authority", '"@authority": [::1]:8443'),
            ("HTTPS://example.com/p", "@scheme", '"@scheme": https'),
            ("https://www.example.com/path?param=value", "@path", '"@path": /path'),
            ("https://www.example.com", "@path", '"@path": /'),
            (
                "https://www.example.com/path?param=value&foo=bar&baz=bat%2Dman",
                "@query",
                '"@query": ?param=value&foo=bar&baz=bat%2Dman',
            ),
            ("https://www.example.com/path", "@query", '"@query": ?'),
            (
                "https://www.example.com/path?param=value",
                "@request-target",
                '"@request-target": /path?param=value',
            ),
            ("https://www.example.com/path", "@request-target", '"@request-target": /path'),
        ],
    )
    def test_derived_component_values(self, url: str, component: str, line: str) -> None:
        """Derived components take their RFC 9421 §2.2 values from the target URI."""
        assert _base_of(HttpRequest("GET", url), component) == line

    def test_method_is_taken_as_sent(self) -> None:
        """@method is the request method."""
        assert _base_of(HttpRequest("POST", "https://e.com/"), "@method") == '"@method": POST'

    def test_fields_are_looked_up_case_insensitively(self) -> None:
        """A field is covered by its lowercase name whatever the case it was sent in."""
        request = HttpRequest("GET", "https://e.com/", {"X-Thing": "  value \t"})
        assert request.header("x-THING") == "value"
        assert _base_of(request, "x-thing") == '"x-thing": value'

    def test_repeated_field_lines_are_combined(self) -> None:
        """Several lines of one field are trimmed and joined with ', ' in order (§2.1)."""
        request = HttpRequest.from_fields(
            "GET", "https://e.com/", [("Cache-Control", "max-age=60 "), ("cache-control", " must-revalidate")]
        )
        assert _base_of(request, "cache-control") == '"cache-control": max-age=60, must-revalidate'

    def test_obs_fold_becomes_a_space(self) -> None:
        """Obsolete line folding inside a value is replaced by one space (§2.1)."""
        request = HttpRequest("GET", "https://e.com/", {"x-obs-fold-header": "Obsolete\r\n    line folding."})
        assert _base_of(request, "x-obs-fold-header") == '"x-obs-fold-header": Obsolete line folding.'

    def test_empty_field_value(self) -> None:
        """An empty field is covered with an empty value."""
        request = HttpRequest("GET", "https://e.com/", {"X-Empty-Header": ""})
        assert _base_of(request, "x-empty-header") == '"x-empty-header": '

    def test_missing_field_is_refused(self) -> None:
        """A covered field absent from the message is a MissingComponent naming it."""
        with pytest.raises(MissingComponent, match="x-absent"):
            _base_of(HttpRequest("GET", "https://e.com/"), "x-absent")

    def test_relative_target_is_refused_for_uri_components(self) -> None:
        """@authority needs an absolute target URI."""
        with pytest.raises(MissingComponent, match="absolute"):
            _base_of(HttpRequest("GET", "/relative"), "@authority")

    @pytest.mark.parametrize(
        "component",
        [
            "@status",
            "@signature-params",
            '@query-param;name="a"',
            "@unknown",
            "date;sf",
            'date;key="a"',
            "date;bs",
            "@method;req",
        ],
    )
    def test_unsupported_components_are_refused(self, component: str) -> None:
        """Components this implementation does not derive raise UnsupportedComponent."""
        request = HttpRequest("GET", "https://e.com/?a=1", {"date": "x"})
        with pytest.raises(UnsupportedComponent):
            _base_of(request, component)

    @pytest.mark.parametrize("component", ["Date", "da te", "", "@method;name=1", "x;unknown"])
    def test_malformed_component_strings_are_refused(self, component: str) -> None:
        """A component string that is not a lowercase name with known parameters is refused."""
        with pytest.raises(UnsupportedComponent):
            _base_of(HttpRequest("GET", "https://e.com/"), component)

    def test_line_break_in_value_is_refused(self) -> None:
        """A value that would add a line to the signature base is refused."""
        request = HttpRequest("GET", "https://e.com/", {"x-evil": "a\nb"})
        with pytest.raises(UnsupportedComponent, match="line break"):
            _base_of(request, "x-evil")

    def test_component_covered_twice_is_refused(self) -> None:
        """The same component twice in the covered list is refused."""
        with pytest.raises(MalformedSignatureHeader, match="twice"):
            sign_request(
                HttpRequest("GET", "https://e.com/"),
                key=b"k" * 32,
                keyid="k",
                components=["@method", "@method"],
                created=1,
                alg="hmac-sha256",
            )


# -- signing and verifying --------------------------------------------------------------------


def _post() -> HttpRequest:
    return HttpRequest(
        "POST", "https://api.example.com/readings?unit=c", {"Content-Type": "application/json"}, b'{"t": 21}'
    )


def _signed(request: HttpRequest, **kwargs: Any) -> tuple[HttpRequest, SignatureInput]:
    """Sign, add the headers to the request as a client would, and parse them back."""
    headers = sign_request(request, created=1_700_000_000, **kwargs)
    sent = HttpRequest(request.method, request.url, {**request.headers, **headers}, request.body)
    return sent, _one(dict(sent.headers))


class TestSignAndVerify:
    """Round trips and refusals for ed25519 and hmac-sha256."""

    def test_ed25519_round_trip_with_all_parameters(self) -> None:
        """Every signature parameter is written, parsed back, and the signature verifies."""
        key = Ed25519PrivateKey.generate()
        sent, sig = _signed(
            _post(), key=key, keyid="did:example:d#key-1", expires=1_700_000_060, nonce="n-1", tag="trellis"
        )
        assert (sig.keyid, sig.alg, sig.created, sig.expires, sig.nonce, sig.tag) == (
            "did:example:d#key-1",
            "ed25519",
            1_700_000_000,
            1_700_000_060,
            "n-1",
            "trellis",
        )
        assert sig.components == ("@method", "@target-uri", "content-digest")
        verify_signature(sent, sig, key.public_key)

    def test_content_digest_is_added_when_covered(self) -> None:
        """Covering content-digest adds a Content-Digest of the body."""
        headers = sign_request(_post(), key=Ed25519PrivateKey.generate(), keyid="k", created=1)
        assert headers["Content-Digest"] == content_digest(b'{"t": 21}')

    def test_existing_content_digest_is_kept(self) -> None:
        """A Content-Digest already on the request is covered as it is, not replaced."""
        request = replace(_post(), headers={"Content-Digest": content_digest(b'{"t": 21}', "sha-512")})
        headers = sign_request(request, key=Ed25519PrivateKey.generate(), keyid="k", created=1)
        assert "Content-Digest" not in headers

    def test_hmac_round_trip(self) -> None:
        """hmac-sha256 signatures verify with the same key."""
        key = bytes(range(32))
        sent, sig = _signed(_post(), key=key, keyid="session-1", alg="hmac-sha256")
        verify_signature(sent, sig, key)

    def test_changed_body_is_a_digest_mismatch(self) -> None:
        """The signature covers the digest, the digest the body: a new body fails the digest check."""
        key = Ed25519PrivateKey.generate()
        sent, sig = _signed(_post(), key=key, keyid="k")
        with pytest.raises(DigestMismatch):
            verify_signature(replace(sent, body=b'{"t": 99}'), sig, key.public_key)

    @pytest.mark.parametrize(
        "change",
        [
            {"method": "PUT"},
            {"url": "https://api.example.com/readings?unit=f"},
            {"url": "https://evil.example.com/readings?unit=c"},
        ],
    )
    def test_changed_request_is_a_signature_mismatch(self, change: dict[str, str]) -> None:
        """Changing a covered component breaks the signature."""
        key = Ed25519PrivateKey.generate()
        sent, sig = _signed(_post(), key=key, keyid="k")
        with pytest.raises(SignatureMismatch):
            verify_signature(replace(sent, **change), sig, key.public_key)  # type: ignore[arg-type]

    def test_wrong_hmac_key_is_a_signature_mismatch(self) -> None:
        """Another session key does not verify."""
        sent, sig = _signed(_post(), key=b"a" * 32, keyid="s", alg="hmac-sha256")
        with pytest.raises(SignatureMismatch, match="hmac-sha256"):
            verify_signature(sent, sig, b"b" * 32)

    def test_alg_parameter_must_match_the_key(self) -> None:
        """An hmac-sha256 signature is not checked with an Ed25519 key, nor the other way round."""
        sent, sig = _signed(_post(), key=b"a" * 32, keyid="s", alg="hmac-sha256")
        with pytest.raises(SignatureMismatch, match="alg"):
            verify_signature(sent, sig, Ed25519PrivateKey.generate().public_key)
        key = Ed25519PrivateKey.generate()
        sent, sig = _signed(_post(), key=key, keyid="k")
        with pytest.raises(SignatureMismatch, match="alg"):
            verify_signature(sent, sig, bytes(key.public_key))

    def test_unknown_alg_parameter_is_refused(self) -> None:
        """An alg this module does not implement is UnsupportedAlgorithm."""
        sent, sig = _signed(_post(), key=Ed25519PrivateKey.generate(), keyid="k")
        with pytest.raises(UnsupportedAlgorithm, match="rsa"):
            verify_signature(
                sent, replace(sig, alg="rsa-pss-sha512"), Ed25519PrivateKey.generate().public_key
            )

    def test_short_hmac_key_is_refused(self) -> None:
        """HMAC keys under 32 bytes are refused for signing and verifying."""
        with pytest.raises(UnsupportedAlgorithm):
            sign_request(_post(), key=b"short", keyid="s", created=1, alg="hmac-sha256")
        sent, sig = _signed(_post(), key=b"a" * 32, keyid="s", alg="hmac-sha256")
        with pytest.raises(UnsupportedAlgorithm):
            verify_signature(sent, sig, b"a" * 16)

    def test_key_must_fit_the_algorithm_when_signing(self) -> None:
        """ed25519 needs an Ed25519PrivateKey; an unknown alg is refused."""
        with pytest.raises(UnsupportedAlgorithm):
            sign_request(_post(), key=b"a" * 32, keyid="k", created=1, alg="ed25519")
        with pytest.raises(UnsupportedAlgorithm):
            sign_request(_post(), key=b"a" * 32, keyid="k", created=1, alg="hmac-sha512")

    @pytest.mark.parametrize(
        "kwargs",
        [{"label": "Sig"}, {"keyid": "é"}, {"nonce": "a\nb"}, {"created": "1"}, {"created": True}],
    )
    def test_unserializable_parameters_are_refused(self, kwargs: dict[str, Any]) -> None:
        """Labels and parameters that cannot be Structured Field values are refused."""
        arguments: dict[str, Any] = {
            "key": b"a" * 32,
            "keyid": "k",
            "created": 1,
            "alg": "hmac-sha256",
            **kwargs,
        }
        with pytest.raises(MalformedSignatureHeader):
            sign_request(_post(), **arguments)


# -- parsing ----------------------------------------------------------------------------------

GOOD_INPUT = 'sig1=("@method" "@target-uri");created=1;keyid="k"'
GOOD_SIGNATURE = "sig1=:" + base64.b64encode(b"x" * 64).decode() + ":"


class TestParse:
    """parse_signatures is strict and names the problem."""

    def test_no_headers_means_no_signatures(self) -> None:
        """A message with neither field carries no signatures."""
        assert parse_signatures({"content-type": "text/plain"}) == []

    def test_several_signatures_in_order(self) -> None:
        """Every label is returned, in Signature-Input order, whatever the header-name case."""
        sigs = parse_signatures(
            {
                "SIGNATURE-INPUT": f'{GOOD_INPUT}, proxy=("@authority");created=2;alg="hmac-sha256"',
                "signature": f"proxy=:AAAA:, {GOOD_SIGNATURE}",
            }
        )
        assert [s.label for s in sigs] == ["sig1", "proxy"]
        assert sigs[1].raw_params == '("@authority");created=2;alg="hmac-sha256"'
        assert sigs[1].keyid is None and sigs[1].signature == b"\x00\x00\x00"

    def test_raw_params_is_the_serialized_inner_list(self) -> None:
        """raw_params is the canonical serialization used as @signature-params."""
        sig = _one(
            {"Signature-Input": 'sig1=( "@method"  "date" );keyid="k";created=1', "Signature": GOOD_SIGNATURE}
        )
        assert sig.raw_params == '("@method" "date");keyid="k";created=1'

    @pytest.mark.parametrize(
        ("headers", "problem"),
        [
            ({"Signature-Input": GOOD_INPUT}, "Signature is not"),
            ({"Signature": GOOD_SIGNATURE}, "Signature-Input is not"),
            ({"Signature-Input": GOOD_INPUT, "Signature": "other=:AAAA:"}, "no matching"),
            (
                {"Signature-Input": f"{GOOD_INPUT}, {GOOD_INPUT}", "Signature": GOOD_SIGNATURE},
                "repeats the label sig1",
            ),
            (
                {"Signature-Input": GOOD_INPUT, "Signature": f"{GOOD_SIGNATURE}, {GOOD_SIGNATURE}"},
                "repeats the label",
            ),
            ({"Signature-Input": 'sig1="@method"', "Signature": GOOD_SIGNATURE}, "Inner List"),
            ({"Signature-Input": "sig1=(method)", "Signature": GOOD_SIGNATURE}, "not a String"),
            ({"Signature-Input": 'sig1=("Date")', "Signature": GOOD_SIGNATURE}, "lowercase"),
            ({"Signature-Input": 'sig1=("a b")', "Signature": GOOD_SIGNATURE}, "lowercase"),
            ({"Signature-Input": 'sig1=("date" "date")', "Signature": GOOD_SIGNATURE}, "twice"),
            (
                {"Signature-Input": 'sig1=("date";foo)', "Signature": GOOD_SIGNATURE},
                "unknown component parameter",
            ),
            ({"Signature-Input": 'sig1=("date";key=1)', "Signature": GOOD_SIGNATURE}, "bad value"),
            ({"Signature-Input": 'sig1=();created="1"', "Signature": GOOD_SIGNATURE}, "created"),
            ({"Signature-Input": "sig1=();created=-1", "Signature": GOOD_SIGNATURE}, "non-negative"),
            ({"Signature-Input": "sig1=();created=1.5", "Signature": GOOD_SIGNATURE}, "created"),
            ({"Signature-Input": "sig1=();expires", "Signature": GOOD_SIGNATURE}, "expires"),
            ({"Signature-Input": "sig1=();keyid=k", "Signature": GOOD_SIGNATURE}, "keyid"),
            (
                {"Signature-Input": "sig1=();color=1", "Signature": GOOD_SIGNATURE},
                "unknown signature parameter",
            ),
            ({"Signature-Input": "sig1=()", "Signature": 'sig1="abc"'}, "Byte Sequence"),
            ({"Signature-Input": "sig1=()", "Signature": "sig1=:AAAA:;x=1"}, "Byte Sequence"),
            ({"Signature-Input": "sig1=()", "Signature": "sig1=(:AAAA:)"}, "Byte Sequence"),
            ({"Signature-Input": "sig1=(", "Signature": GOOD_SIGNATURE}, "Structured Field"),
            ({"Signature-Input": "Sig1=()", "Signature": GOOD_SIGNATURE}, "Structured Field"),
            ({"Signature-Input": "sig1=()", "Signature": "sig1=:A*A:"}, "Structured Field"),
            ({"Signature-Input": 'sig1=("é")', "Signature": GOOD_SIGNATURE}, "Structured Field"),
            ({"Signature-Input": "", "Signature": GOOD_SIGNATURE}, "Structured Field"),
        ],
    )
    def test_malformed_headers_are_refused(self, headers: dict[str, str], problem: str) -> None:
        """Each malformation raises MalformedSignatureHeader naming the problem."""
        with pytest.raises(MalformedSignatureHeader, match=problem):
            parse_signatures(headers)

    def test_oversize_header_is_refused(self) -> None:
        """A Signature-Input over the cap is refused before it is parsed."""
        big = GOOD_INPUT + ';nonce="' + "n" * MAX_SIGNATURE_HEADER_SIZE + '"'
        with pytest.raises(MalformedSignatureHeader, match="at most"):
            parse_signatures({"Signature-Input": big, "Signature": GOOD_SIGNATURE})

    def test_error_names_the_label(self) -> None:
        """Errors about one signature carry its label."""
        with pytest.raises(MalformedSignatureHeader) as caught:
            parse_signatures({"Signature-Input": "mine=();created=x", "Signature": "mine=:AAAA:"})
        assert caught.value.label == "mine"


# -- fuzzing ----------------------------------------------------------------------------------

_SF_PIECES = st.sampled_from(
    [*'sig1=()";:@-,* \tabcdefkyzAZ019+/.?é\\', '"@method"', '"date"', "created=", "keyid=", ":AAAA:", ";"]
)
_SF_TEXT = st.lists(_SF_PIECES, max_size=30).map("".join)


def _exercise(headers: dict[str, str]) -> None:
    """Parse, build bases and verify; anything but the wallet's typed errors fails the test."""
    request = HttpRequest(
        "POST", "https://e.com/p?q=1", {"content-digest": "sha-256=:AAAA:", "date": "d"}, b"x"
    )
    with contextlib.suppress(HttpSignatureError):
        for sig in parse_signatures(headers):
            with contextlib.suppress(HttpSignatureError):
                verify_signature(request, sig, Ed25519PrivateKey(bytes(32)).public_key)
            with contextlib.suppress(HttpSignatureError):
                verify_signature(request, sig, b"k" * 32)


@settings(max_examples=300)
@given(_SF_TEXT, _SF_TEXT)
def test_fuzz_random_headers_raise_only_typed_errors(signature_input: str, signature: str) -> None:
    """Random Signature-Input / Signature text never raises anything but HttpSignatureError."""
    _exercise({"Signature-Input": signature_input, "Signature": signature})


_VALID_INPUT = 'sig1=("@method" "@target-uri" "content-digest" "date");created=1;expires=2;keyid="k";nonce="n";alg="ed25519"'
_VALID_SIGNATURE = "sig1=:" + base64.b64encode(bytes(64)).decode() + ":"


@settings(max_examples=300)
@given(
    st.sampled_from([0, 1]),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 3), st.characters(codec="latin-1")), max_size=6),
)
def test_fuzz_mutated_headers_raise_only_typed_errors(which: int, edits: list[tuple[int, int, str]]) -> None:
    """Valid headers with characters replaced, inserted or deleted raise only HttpSignatureError."""
    values = [_VALID_INPUT, _VALID_SIGNATURE]
    text = values[which]
    for position, operation, char in edits:
        at = position % (len(text) + 1)
        if operation == 0:
            text = text[:at] + char + text[at + 1 :]
        elif operation == 1:
            text = text[:at] + char + text[at:]
        elif operation == 2:
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + text[at:] * 2
    values[which] = text[: 2 * MAX_SIGNATURE_HEADER_SIZE]
    _exercise({"Signature-Input": values[0], "Signature": values[1]})
