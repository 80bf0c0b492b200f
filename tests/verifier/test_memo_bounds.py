"""What a sender chooses the size of is kept within bounds: decoded credential headers (weighed, and
never remembered before a signature verifies), replay records (fixed-size), request-URL memos."""

from __future__ import annotations

import base64
import gc
import json
import secrets
import sys
import tracemalloc
from typing import Any
from urllib.parse import urlsplit

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from tests.verifier.lifetime_world import URL, World, make_world
from verifier import AuthenticatedDevice, MemoryNonceStore, Reason, Refused, Verifier, _fast, _signed
from verifier._signed import CREDENTIAL_HEADER
from wallet.device_client import SIGNED_COMPONENTS
from wallet.http_signatures import HttpRequest, fast_signature_base, sign_request

MiB = 1024 * 1024
BUDGET = 32 * MiB  # what the decoded-header memo may hold, as docs/verifier.md says
LIMIT = 64 * 1024  # the longest Device-Credential header


def _header(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _hostile(tag: int) -> str:
    """A credential header at the size limit that decodes to as many objects as it can: a JSON object
    (the shape of a credential) holding a list of empty objects (about 1.2 MiB of them)."""
    count = (LIMIT * 3 // 4 - 40) // 3
    return _header(f'{{"tag":{tag},"a":[' + ",".join(["{}"] * count) + "]}")


def _signed_request(
    world: World,
    *,
    nonce: str | None = None,
    url: str = URL,
    key: Ed25519PrivateKey | bytes | None = None,
    keyid: str | None = None,
    alg: str = "ed25519",
    headers: dict[str, str] | None = None,
) -> HttpRequest:
    """A POST to ``url`` signed by the device (or ``key``/``keyid``) as devices sign, with ``nonce``."""
    if headers is None:
        headers = {CREDENTIAL_HEADER: world.header}
    base = HttpRequest("POST", url, {"content-type": "application/json", **headers}, b"{}")
    created = int(world.clock())
    added = sign_request(
        base, key=world.device_key if key is None else key, keyid=keyid or f"{world.device}#key-1",
        components=SIGNED_COMPONENTS, created=created, expires=created + 60,
        nonce=nonce or secrets.token_urlsafe(16), alg=alg,
    )  # fmt: skip
    return HttpRequest("POST", url, {**base.headers, **added}, b"{}")


def _with_header(request: HttpRequest, header: str) -> HttpRequest:
    """``request`` carrying ``header`` as its credential (the header is not signed)."""
    return HttpRequest(
        request.method, request.url, {**request.headers, CREDENTIAL_HEADER: header}, request.body
    )


def _forged(request: HttpRequest) -> HttpRequest:
    """``request`` with its signature's first byte changed (the signature no longer verifies)."""
    label, _, value = request.headers["signature"].partition("=:")
    forged = f"{label}=:{'A' if value[0] != 'A' else 'B'}{value[1:]}"
    return HttpRequest(request.method, request.url, {**request.headers, "signature": forged}, request.body)


# --- finding 4: the memo of decoded Device-Credential headers ---


def test_hostile_credential_headers_of_an_enrolled_device_leave_the_memos_under_their_budget() -> None:
    """An enrolled device's validly signed requests with 40 distinct credential headers at the size
    limit, each decoding to some 1.2 MiB of objects (48 MiB in all), leave less than the memo's
    32 MiB budget held once the requests are gone (traced memory; before the fix all were kept)."""
    world = make_world()
    verifier = world.verifier(sessions=False)
    requests = [_with_header(_signed_request(world), _hostile(tag)) for tag in range(40)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        while requests:
            with pytest.raises(Refused) as refused:
                verifier.authenticate_request(requests.pop())
            assert refused.value.authenticated  # the device's own requests, refused for their credential
            del refused
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < BUDGET, f"{held / MiB:.1f} MiB held"


def test_the_decoded_header_memo_weighs_no_more_than_its_budget() -> None:
    """After 100 distinct hostile headers the decoded-header memo weighs at most its budget, and holds
    fewer than them (each weighs several MiB)."""
    for tag in range(100):
        _signed._remembered_credential(_hostile(1000 + tag))
    assert _signed._DECODED.weight <= _signed.DECODED_WEIGHT == BUDGET
    assert len([tag for tag in range(100) if _hostile(1000 + tag) in _signed._DECODED]) < 100


def _traced(text: bytes) -> int:
    """The bytes the objects ``text`` decodes to take (traced), while they are held."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        decoded = json.loads(text)
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del decoded
    return taken


def _filled(part: Any, open_: str = "[", close: str = "]") -> str:
    """JSON text of ``part`` (text, or a function of the index giving text) repeated to fill a header."""
    parts: list[str] = []
    size = 2
    while True:
        item = part(len(parts)) if callable(part) else part
        if size + len(item) + 1 > LIMIT * 3 // 4:
            return open_ + ",".join(parts) + close
        parts.append(item)
        size += len(item) + 1


SHAPES = {
    "objects": _filled("{}"),
    "arrays": _filled("[]"),
    "nested arrays": _filled("[[[]]]"),
    "deep arrays": _filled("[" * 500 + "]" * 500),
    "deep objects": _filled('{"a":' * 400 + "{}" + "}" * 400),
    "one-member objects": _filled('{"a":0}'),
    "objects of objects": _filled('{"a":{"a":{"a":{}}}}'),
    "objects of arrays": _filled('{"a":[]}'),
    "floats": _filled("1.5"),
    "short strings": _filled('"ab"'),
    "distinct strings": _filled(lambda i: f'"{i:x}"'),
    "distinct numbers": _filled(lambda i: str(1000 + i)),
    "distinct keys": _filled(lambda i: f'"{i:x}":{{}}', "{", "}"),
    "one-key objects": _filled(lambda i: f'{{"{i:x}":0}}'),
    "wide strings": _filled('"\\u0100"'),
    "wider strings": _filled('"\\ud83d\\ude00"'),
    "a wide long string": '"\\ud83d\\ude00' + "a" * (LIMIT * 3 // 4 - 20) + '"',
    "a raw wide long string": '"\U0001f600' + "a" * (LIMIT * 3 // 4 - 20) + '"',
    "long numbers": _filled("9" * 4000),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_header_weighs_at_least_what_it_takes(shape: str) -> None:
    """The weight of a remembered header is at least the bytes it takes: the header string and the
    objects its JSON decodes to, for shapes chosen to take the most memory for their size."""
    text = SHAPES[shape].encode()
    header = base64.urlsafe_b64encode(text).decode().rstrip("=")
    assert len(header) <= LIMIT
    assert _signed._weight(header, text) >= sys.getsizeof(header) + _traced(text)


def test_a_typical_credential_leaves_room_for_the_devices_the_memo_keeps() -> None:
    """Weighed, an ordinary device credential leaves room in the budget for all 4,096 devices the memo
    keeps, and does not weigh more than twice what it takes."""
    world = make_world()
    text = base64.urlsafe_b64decode(world.header + "=" * (-len(world.header) % 4))
    weight = _signed._weight(world.header, text)
    assert _signed.DECODED_KEPT * weight <= _signed.DECODED_WEIGHT
    assert weight <= 2 * (sys.getsizeof(world.header) + _traced(text))


def test_reading_a_batch_ahead_remembers_no_credential_header() -> None:
    """Reading the DIDs of a batch ahead (before any signature is checked) leaves the memo of decoded
    headers as it was, though it reads the issuer from each header."""
    world = make_world()
    headers = [_header(json.dumps({**world.credential, "tag": tag})) for tag in range(3)]
    requests = [_with_header(_signed_request(world), header) for header in headers]
    held = len(_signed._DECODED)
    assert _signed.dids_in(requests) == [world.device, world.issuer]
    assert len(_signed._DECODED) == held
    assert not any(header in _signed._DECODED for header in headers)


def test_a_forged_batch_item_leaves_no_credential_header_remembered() -> None:
    """A batch item whose signature does not verify is refused bad_signature, and its credential
    header is not remembered."""
    world = make_world()
    header = _hostile(-1)
    [refused] = world.verifier(sessions=False).authenticate_many(
        [_forged(_with_header(_signed_request(world), header))]
    )
    assert isinstance(refused, Refused) and refused.reason is Reason.BAD_SIGNATURE
    assert header not in _signed._DECODED


def test_a_device_credential_is_still_remembered_once_its_signature_verified() -> None:
    """A device's credential header decoded for a request whose signature verified is remembered (the
    same header then gives the same object, which the credential checks remember)."""
    world = make_world()
    header = _header(json.dumps(world.credential, separators=(",", ":")))
    verifier = world.verifier(sessions=False)
    device = verifier.authenticate_many([_with_header(_signed_request(world), header)])[0]
    assert isinstance(device, AuthenticatedDevice) and device.did == world.device
    assert header in _signed._DECODED


# --- finding 6: replay records ---


class _Recording(MemoryNonceStore):
    """A memory nonce store noting every value it is asked to use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.used: list[str] = []

    def use(self, namespace: str, value: str, expires_at: float) -> bool:
        self.used.append(value)
        return super().use(namespace, value, expires_at)


def _recording(world: World, *, sessions: bool = False) -> tuple[Verifier, _Recording]:
    verifier = world.verifier(sessions=sessions)
    store = _Recording(clock=world.clock)
    verifier.nonces = store
    return verifier, store


@pytest.mark.parametrize("path", ["fast", "general"])
def test_a_long_nonce_or_key_id_is_recorded_in_a_bounded_size(path: str) -> None:
    """A device's requests with a 7,900-character nonce, or a key id with a 7,000-character path, are
    let in and each recorded in at most 128 characters, on either path."""
    world = make_world()
    verifier, store = _recording(world)
    check = _fast.authenticate_request if path == "fast" else _signed.authenticate_request
    requests = [
        _signed_request(world, nonce="N" * 7900),
        _signed_request(world, keyid=f"{world.device}/{'p' * 7000}#key-1"),
    ]
    for request in requests:
        assert fast_signature_base(request) is not None  # the devices' shape, which the fast path takes
        assert check(verifier, request, None, None).did == world.device
    assert len(store.used) == 2 and all(len(value) <= 128 for value in store.used)


@pytest.mark.parametrize("path", ["fast", "general"])
def test_a_devices_replay_record_is_as_it_was(path: str) -> None:
    """A device's request with an ordinary nonce is recorded as its key id and nonce, as before (so
    processes of the old and the new version sharing a Redis store record the same value)."""
    world = make_world()
    verifier, store = _recording(world)
    check = _fast.authenticate_request if path == "fast" else _signed.authenticate_request
    nonce = secrets.token_urlsafe(16)
    assert check(verifier, _signed_request(world, nonce=nonce), None, None).did == world.device
    assert store.used == [f"{world.device}#key-1 {nonce}"]


@pytest.mark.parametrize("nonce", [22, 300])
@pytest.mark.parametrize("first", ["fast", "general"])
def test_a_request_let_in_on_one_path_is_a_replay_on_the_other(first: str, nonce: int) -> None:
    """The fast path and the general one record the same value for a request, with a nonce written
    out or digested: one let in by either is refused replayed by the other."""
    world = make_world()
    verifier = world.verifier(sessions=False)
    paths = [_fast.authenticate_request, _signed.authenticate_request]
    once, again = paths if first == "fast" else paths[::-1]
    request = _signed_request(world, nonce="N" * nonce)
    assert once(verifier, request, None, None).did == world.device
    with pytest.raises(Refused) as refused:
        again(verifier, request, None, None)
    assert refused.value.reason is Reason.REPLAYED


@pytest.mark.parametrize("first", ["fast", "general"])
def test_a_session_request_let_in_on_one_path_is_a_replay_on_the_other(first: str) -> None:
    """Within a session, the fast path and the general one record the same value for a request too."""
    from did_registry.identity.multikey import decode_x25519_public_key
    from wallet.session_keys import session_key

    world = make_world()
    verifier = world.verifier()
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    key = session_key(
        world.device_key.to_x25519(), decode_x25519_public_key(offer["verifier_key"]), offer["session_id"]
    )
    request = _signed_request(world, key=key, keyid=offer["session_id"], alg="hmac-sha256", headers={})
    paths = [_fast.authenticate_request, _signed.authenticate_request]
    once, again = paths if first == "fast" else paths[::-1]
    assert once(verifier, request, None, None).did == world.device
    with pytest.raises(Refused) as refused:
        again(verifier, request, None, None)
    assert refused.value.reason is Reason.REPLAYED


@pytest.mark.parametrize("nonce", ["n", "n" * 200])
def test_replay_records_differ_by_key_id_and_by_nonce(nonce: str) -> None:
    """The record of a nonce (written out or digested) names its key id too: the same nonce under
    another key id, or another nonce under the same key id, is another record."""
    records = {
        _signed.replay_record("did:trellis:t:a#key-1", nonce),
        _signed.replay_record("did:trellis:t:b#key-1", nonce),
        _signed.replay_record("did:trellis:t:a#key-1", nonce + "2"),
    }
    assert len(records) == 3


# --- finding 9: request-URL memos ---


def _urlsplit_misses() -> int:
    """How many URLs urllib's ``urlsplit`` has split and cached (CPython 3.11 keeps the last 128)."""
    return int(urlsplit.cache_info().misses)  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["fast", "general"])
def test_a_long_request_url_is_not_remembered(path: str) -> None:
    """A request to a 100,000-character URL (here with a forged signature) is answered as before, but
    its URL is kept in neither URL memo, nor in the cache of urllib's ``urlsplit``; one of ordinary
    length still is."""
    world = make_world()
    verifier = world.verifier(sessions=False)
    check = _fast.authenticate_request if path == "fast" else _signed.authenticate_request
    long_url = f"{URL}/{secrets.token_hex(8)}/" + "a" * 100_000
    short_url = f"{URL}/{secrets.token_hex(8)}"
    request = _forged(_signed_request(world, url=long_url))
    misses = _urlsplit_misses()
    with pytest.raises(Refused) as refused:
        check(verifier, request, None, None)
    assert refused.value.reason is Reason.BAD_SIGNATURE
    assert _urlsplit_misses() == misses  # the standard library's cache was not asked
    with pytest.raises(Refused) as refused:
        check(verifier, _forged(_signed_request(world, url=short_url)), None, None)
    assert refused.value.reason is Reason.BAD_SIGNATURE
    assert long_url not in _fast._ORIGINS and long_url not in _signed._AUDIENCES
    assert short_url in _signed._AUDIENCES
    assert (short_url in _fast._ORIGINS) is (path == "fast")
