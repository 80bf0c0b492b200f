"""One scenario per refusal reason (against verifier.testing.StaticLedger), and fuzzing: only Refused escapes."""

from __future__ import annotations

import contextlib
import copy
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.multikey import decode_x25519_public_key
from verifier import ConfigurationError, MemorySessionStore, Policy, Reason, Refused, Verifier
from verifier._signed import CREDENTIAL_HEADER, encode_credential_header
from verifier.testing import StaticLedger
from wallet.credential import build_credential, issue_credential
from wallet.http_signatures import HttpRequest, sign_request
from wallet.presentation import build_presentation, sign_presentation
from wallet.session_keys import session_key

AUDIENCE = "https://service.example"
URL = "https://service.example/readings"


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """A static ledger with an accredited issuer, one device and its credential, and a verifier."""

    ledger: StaticLedger
    clock: Clock
    verifier: Verifier
    issuer_key: Ed25519PrivateKey
    issuer: str
    key: Ed25519PrivateKey
    did: str
    index: int

    def credential(self, *, types: tuple[str, ...] = ("DeviceCredential",), **changes: Any) -> dict[str, Any]:
        """A credential for the device (``changes`` adjust validity, subject, issuer)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        issuer = changes.pop("issuer", self.issuer)
        issuer_key = changes.pop("issuer_key", self.issuer_key)
        index = changes.pop("index", self.index)
        status = [
            {
                "type": "BitstringStatusListEntry",
                "statusPurpose": purpose,
                "statusListIndex": str(index),
                "statusListCredential": f"https://ledger.test/status-lists/{issuer}/{name}/credential",
            }
            for name, purpose in (("rev", "revocation"), ("sus", "suspension"))
        ]
        document = build_credential(
            issuer=issuer,
            subject={"id": changes.pop("subject", self.did)},
            types=types,
            credential_id=f"urn:uuid:{secrets.token_hex(8)}",
            valid_from=changes.pop("valid_from", now - timedelta(minutes=5)),
            valid_until=changes.pop("valid_until", now + timedelta(days=30)),
            status=status,
        )
        return issue_credential(document, issuer_key, f"{issuer}#key-1", created=now)

    def present(self, *, credentials: list[dict[str, Any]] | None = None, **options: Any) -> dict[str, Any]:
        """The device's answer to a fresh challenge."""
        challenge = options.pop("challenge", None) or self.verifier.challenge(AUDIENCE)
        holder = options.pop("holder", self.did)
        presentation = build_presentation(
            holder=holder, credentials=[self.credential()] if credentials is None else credentials
        )
        return sign_presentation(
            presentation,
            options.pop("key", self.key),
            options.pop("method", f"{holder}#key-1"),
            challenge=challenge["nonce"],
            domain=options.pop("domain", AUDIENCE),
            created=datetime.fromtimestamp(self.clock(), UTC),
        )

    def signed(self, **options: Any) -> HttpRequest:
        """A signed request from the device."""
        body = b"{}"
        headers = {CREDENTIAL_HEADER: encode_credential_header(self.credential())}
        request = HttpRequest("POST", URL, headers, body)
        created = int(self.clock() + options.pop("offset", 0))
        added = sign_request(
            request,
            key=options.pop("key", self.key),
            keyid=options.pop("keyid", f"{self.did}#key-1"),
            components=options.pop("components", ("@method", "@target-uri", "content-digest")),
            created=created,
            expires=created + 60,
            nonce=options.pop("nonce", secrets.token_urlsafe(12)),
            alg=options.pop("alg", "ed25519"),
        )
        return HttpRequest("POST", URL, {**request.headers, **added}, options.pop("body", body))

    def session_request(self, offer: dict[str, str]) -> HttpRequest:
        """A request in the session of ``offer``."""
        key = session_key(
            self.key.to_x25519(), decode_x25519_public_key(offer["verifier_key"]), offer["session_id"]
        )
        return self.signed(key=key, keyid=offer["session_id"], alg="hmac-sha256")


@pytest.fixture
def world() -> World:
    """A fresh static world."""
    ledger, clock = StaticLedger(), Clock()
    issuer_key, key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    issuer = ledger.add_issuer(issuer_key)
    ledger.create_status_list(issuer, "rev", "revocation")
    ledger.create_status_list(issuer, "sus", "suspension")
    did = ledger.add_device(key)
    verifier = ledger.verifier(Policy(), clock=clock, sessions=MemorySessionStore(clock=clock))
    return World(ledger, clock, verifier, issuer_key, issuer, key, did, secrets.randbelow(131_072))


def _by_presentation(world: World, presentation: Any, audience: str = AUDIENCE) -> None:
    world.verifier.authenticate_presentation(presentation, audience)


def _by_request(world: World, request: HttpRequest) -> None:
    world.verifier.authenticate_request(request, "service.example")


def _replayed(world: World) -> None:
    request = world.signed()
    _by_request(world, request)
    _by_request(world, request)


def _challenge_unknown(world: World) -> None:
    answer = world.present()
    _by_presentation(world, answer)
    _by_presentation(world, answer)


def _challenge_expired(world: World) -> None:
    challenge = world.verifier.challenge(AUDIENCE)
    world.clock.now += 61
    _by_presentation(world, world.present(challenge=challenge))


def _session(world: World, change: Callable[[World], None]) -> None:
    offer = world.verifier.authenticate_request(world.signed(), "service.example").session
    assert offer is not None
    change(world)
    _by_request(world, world.session_request(dict(offer)))


def _other_device(world: World) -> None:
    key = Ed25519PrivateKey.generate()
    _by_presentation(world, world.present(key=key, holder=world.ledger.did_for(key)))


def _unavailable(world: World) -> None:
    world.key = Ed25519PrivateKey.generate()
    world.did = world.ledger.add_device(world.key)  # not cached yet
    world.ledger.go_offline()
    _by_presentation(world, world.present())


def _stale(world: World) -> None:
    world.verifier.authenticate_presentation(world.present(), AUDIENCE)
    world.ledger.go_offline()
    world.clock.now += 31
    _by_presentation(world, world.present())


def _after(change: Callable[[World], object]) -> Callable[[World], None]:
    """A scenario: ``change`` the ledger, then answer a challenge."""

    def scenario(world: World) -> None:
        change(world)
        _by_presentation(world, world.present())

    return scenario


SCENARIOS: dict[Reason, Callable[[World], object]] = {
    Reason.MALFORMED: lambda w: _by_presentation(w, {**w.present(), "type": 5}),
    Reason.BAD_SIGNATURE: lambda w: _by_presentation(w, {**w.present(), "id": "urn:x:tampered"}),
    Reason.DIGEST_MISMATCH: lambda w: _by_request(w, w.signed(body=b"other")),
    Reason.KEY_NOT_AUTHORIZED: lambda w: _by_presentation(w, w.present(method=f"{w.did}#key-agreement-1")),
    Reason.DID_NOT_FOUND: _other_device,
    Reason.DID_DEACTIVATED: _after(lambda w: w.ledger.deactivate(w.did)),
    Reason.UNSUPPORTED_DID_METHOD: lambda w: _by_presentation(w, w.present(holder="did:web:device.example")),
    Reason.CREDENTIAL_MISSING: lambda w: _by_presentation(w, w.present(credentials=[])),
    Reason.CREDENTIAL_INVALID: lambda w: _by_presentation(
        w, w.present(credentials=[{**w.credential(), "validUntil": "2999-01-01T00:00:00Z"}])
    ),
    Reason.CREDENTIAL_TYPE_NOT_ACCEPTED: lambda w: _by_presentation(
        w, w.present(credentials=[w.credential(types=("LibraryCard",))])
    ),
    Reason.ISSUER_NOT_ACCREDITED: _after(lambda w: w.ledger.withdraw(w.issuer)),
    Reason.CREDENTIAL_NOT_YET_VALID: lambda w: _by_presentation(
        w,
        w.present(
            credentials=[
                w.credential(valid_from=datetime.fromtimestamp(w.clock() + 3600, UTC), valid_until=None)
            ]
        ),
    ),
    Reason.CREDENTIAL_EXPIRED: lambda w: _by_presentation(
        w,
        w.present(
            credentials=[
                w.credential(
                    valid_from=datetime.fromtimestamp(w.clock() - 7200, UTC),
                    valid_until=datetime.fromtimestamp(w.clock() - 3600, UTC),
                )
            ]
        ),
    ),
    Reason.REVOKED: _after(lambda w: w.ledger.set_status(w.issuer, "rev", w.index)),
    Reason.SUSPENDED: _after(lambda w: w.ledger.set_status(w.issuer, "sus", w.index)),
    Reason.QUARANTINED: _after(lambda w: w.ledger.quarantine(w.did)),
    Reason.CHALLENGE_UNKNOWN: _challenge_unknown,
    Reason.CHALLENGE_EXPIRED: _challenge_expired,
    Reason.WRONG_AUDIENCE: lambda w: _by_presentation(w, w.present(), "https://other.example"),
    Reason.REPLAYED: _replayed,
    Reason.SIGNATURE_EXPIRED: lambda w: _by_request(w, w.signed(offset=-1000)),
    Reason.SESSION_UNKNOWN: lambda w: _by_request(
        w, w.signed(key=b"k" * 32, keyid="no-such-session", alg="hmac-sha256")
    ),
    Reason.SESSION_EXPIRED: lambda w: _session(w, lambda x: setattr(x.clock, "now", x.clock.now + 301)),
    Reason.SESSION_ENDED: lambda w: _session(w, lambda x: x.ledger.set_status(x.issuer, "rev", x.index)),
    Reason.LEDGER_UNAVAILABLE: _unavailable,
    Reason.TOO_STALE: _stale,
}


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_each_reason_has_a_scenario(world: World, reason: Reason) -> None:
    """Every refusal reason is produced by its scenario, and by nothing else first."""
    assert world.verifier.authenticate_presentation(world.present(), AUDIENCE).did == world.did
    with pytest.raises(Refused) as refused:
        SCENARIOS[reason](world)
    assert refused.value.reason is reason, refused.value
    assert refused.value.status in (401, 403, 503)


def test_the_static_ledger_reinstates_and_clears(world: World) -> None:
    """Clearing a suspension bit or the quarantine entry lets the device in again at once."""
    world.ledger.set_status(world.issuer, "sus", world.index)
    world.ledger.set_status(world.issuer, "sus", world.index, False)
    world.ledger.quarantine(world.did)
    world.ledger.clear_quarantine(world.did)
    assert world.verifier.authenticate_presentation(world.present(), AUDIENCE).did == world.did


def test_did_key_devices_are_resolved_locally(world: World) -> None:
    """A did:key device with an accredited issuer's credential authenticates without the ledger."""
    from wallet.holder import did_key_identity

    key = Ed25519PrivateKey.generate()
    did, method = did_key_identity(key)
    world.did, world.key = did, key
    answer = world.present(method=method)
    assert world.verifier.authenticate_presentation(answer, AUDIENCE).did == did


def test_other_did_methods_plug_in(world: World) -> None:
    """A resolver given for a method is used for it (the documented extension point)."""
    from did_registry.identity.resolution import DIDKeyResolver, ResolutionResult
    from wallet.holder import did_key_identity

    key = Ed25519PrivateKey.generate()
    did_key, _ = did_key_identity(key)

    class Aliases:
        def resolve(self, did: str, options: Any = None) -> ResolutionResult:
            document = DIDKeyResolver().resolve(did_key).did_document
            assert document is not None
            data = document.to_json()
            text = __import__("json").dumps(data).replace(did_key, did)
            return ResolutionResult.success(type(document).from_json(__import__("json").loads(text)))

    verifier = world.ledger.verifier(clock=world.clock, resolvers={"example": Aliases()})
    world.verifier, world.did, world.key = verifier, "did:example:device-7", key
    answer = world.present(method=f"did:example:device-7#{did_key.rpartition(':')[2]}")
    assert verifier.authenticate_presentation(answer, AUDIENCE).did == "did:example:device-7"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _mutate(document: Any, path: list[int], value: Any) -> Any:
    """Replace the member that ``path`` picks (indices into sorted keys / items) with ``value``."""
    mutated = copy.deepcopy(document)
    node = mutated
    for step in path:
        children = (
            sorted(node)
            if isinstance(node, dict)
            else list(range(len(node)))
            if isinstance(node, list)
            else []
        )
        if not children:
            break
        chosen = children[step % len(children)]
        if not isinstance(node[chosen], dict | list) or step == path[-1]:
            node[chosen] = value
            return mutated
        node = node[chosen]
    return value if node is mutated else mutated


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.integers(0, 20), min_size=1, max_size=5), value=JSON)
def test_mutated_presentations_are_only_ever_refused(world: World, path: list[int], value: Any) -> None:
    """Whatever member of a valid presentation is replaced by whatever JSON, only Refused comes out."""
    mutated = _mutate(world.present(), path, value)
    with contextlib.suppress(Refused):
        world.verifier.authenticate_presentation(mutated, AUDIENCE)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(presentation=JSON)
def test_arbitrary_json_is_refused(world: World, presentation: Any) -> None:
    """Arbitrary JSON instead of a presentation is refused."""
    with pytest.raises(Refused):
        world.verifier.authenticate_presentation(presentation, AUDIENCE)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    headers=st.dictionaries(
        st.sampled_from(["signature", "signature-input", "content-digest", CREDENTIAL_HEADER, "x"]),
        st.text(max_size=80),
    )
)
def test_arbitrary_signature_headers_are_refused(world: World, headers: dict[str, str]) -> None:
    """Arbitrary signature headers are refused, never crash."""
    with pytest.raises(Refused):
        world.verifier.authenticate_request(HttpRequest("POST", URL, headers, b"{}"))


def test_a_credential_that_cannot_be_revoked_is_refused(world: World) -> None:
    """Without a revocation entry the credential is refused, unless the policy waives it."""
    from wallet.credential import build_credential, issue_credential

    bare = issue_credential(
        build_credential(issuer=world.issuer, subject={"id": world.did}, types=["DeviceCredential"]),
        world.issuer_key,
        f"{world.issuer}#key-1",
    )
    with pytest.raises(Refused) as refused:
        world.verifier.authenticate_presentation(world.present(credentials=[bare]), AUDIENCE)
    assert refused.value.reason is Reason.CREDENTIAL_INVALID and "revocation" in refused.value.detail
    lenient = world.ledger.verifier(Policy(require_revocation=False), clock=world.clock)
    world.verifier = lenient
    assert lenient.authenticate_presentation(world.present(credentials=[bare]), AUDIENCE).did == world.did


def test_several_networks_are_chosen_by_the_did(world: World) -> None:
    """A device of one trusted network with an issuer of another: each DID is read from its own network."""
    city = StaticLedger("citynet")
    city.attach(world.verifier)
    world.key = Ed25519PrivateKey.generate()
    world.did = city.add_device(world.key)
    result = world.verifier.authenticate_presentation(world.present(), AUDIENCE)
    assert result.did.startswith("did:trellis:citynet:") and result.credential is not None
    assert result.credential.issuer.startswith("did:trellis:testnet:")
    city.quarantine(world.did)
    with pytest.raises(Refused) as refused:
        world.verifier.authenticate_presentation(world.present(), AUDIENCE)
    assert refused.value.reason is Reason.QUARANTINED
    with pytest.raises(ConfigurationError, match="already trusted"):
        city.attach(world.verifier)


def test_an_entry_wider_than_one_bit_is_refused(world: World) -> None:
    """Ledger status lists hold one bit per credential. An entry with ``statusSize`` 2 is refused as
    invalid: read as bit ``i`` it would not be the spec's bits ``2i`` and ``2i + 1`` (Bitstring
    Status List §3.2 step 10), so a revoked credential could pass."""
    messages = [{"status": f"0x{n}", "message": f"state {n}"} for n in range(4)]
    wide = [
        {
            "type": "BitstringStatusListEntry",
            "statusPurpose": "revocation",
            "statusListIndex": str(world.index),
            "statusSize": 2,
            "statusMessage": messages,
            "statusListCredential": f"https://ledger.test/status-lists/{world.issuer}/rev/credential",
        }
    ]
    document = build_credential(
        issuer=world.issuer, subject={"id": world.did}, types=["DeviceCredential"], status=wide
    )
    credential = issue_credential(document, world.issuer_key, f"{world.issuer}#key-1")
    with pytest.raises(Refused) as refused:
        world.verifier.authenticate_presentation(world.present(credentials=[credential]), AUDIENCE)
    assert refused.value.reason is Reason.CREDENTIAL_INVALID and "statusSize" in refused.value.detail


def test_a_did_key_that_is_no_valid_point_is_malformed(world: World) -> None:
    """A did:key whose key bytes are off the curve is the device's mistake, not the ledger's: refused
    malformed (invalidPublicKey), not ledger_unavailable."""
    from did_registry.identity.crypto import Ed25519PublicKey
    from did_registry.identity.multikey import encode_ed25519_public_key

    did = "did:key:" + encode_ed25519_public_key(Ed25519PublicKey((2).to_bytes(32, "little")))
    world.did = did
    with pytest.raises(Refused) as refused:
        world.verifier.authenticate_presentation(world.present(method=f"{did}#{did[8:]}"), AUDIENCE)
    assert refused.value.reason is Reason.MALFORMED, refused.value
    assert "invalidPublicKey" in refused.value.detail


class TestSeveralCredentials:
    """A device may present more than one credential of an accepted type: it is let in on the first
    that passes every check, and refused with the first one's reason when none does."""

    def test_a_revoked_credential_then_a_valid_one_lets_the_device_in(self, world: World) -> None:
        revoked, valid = world.credential(), world.credential(index=(world.index + 1) % 131_072)
        world.ledger.set_status(world.issuer, "rev", world.index)
        device = world.verifier.authenticate_presentation(
            world.present(credentials=[revoked, valid]), AUDIENCE
        )
        assert device.credential.id == valid["id"]

    def test_when_none_passes_the_first_ones_refusal_is_raised(self, world: World) -> None:
        revoked = world.credential()
        forged = {**world.credential(index=(world.index + 1) % 131_072), "id": "urn:x:tampered"}
        world.ledger.set_status(world.issuer, "rev", world.index)
        with pytest.raises(Refused) as raised:
            _by_presentation(world, world.present(credentials=[revoked, forged]))
        assert raised.value.reason is Reason.REVOKED
        with pytest.raises(Refused) as raised:
            _by_presentation(world, world.present(credentials=[forged, revoked]))
        assert raised.value.reason is Reason.CREDENTIAL_INVALID  # (its proof does not verify)

    def _other_issuer(self, world: World) -> tuple[str, Ed25519PrivateKey]:
        """A second accredited issuer with its lists, not yet read by the verifier."""
        key = Ed25519PrivateKey.generate()
        issuer = world.ledger.add_issuer(key)
        world.ledger.create_status_list(issuer, "rev", "revocation")
        world.ledger.create_status_list(issuer, "sus", "suspension")
        return issuer, key

    def test_a_credential_the_ledger_cannot_check_now_does_not_keep_a_valid_one_out(
        self, world: World
    ) -> None:
        world.verifier.authenticate_presentation(world.present(), AUDIENCE)  # this issuer is cached
        issuer, key = self._other_issuer(world)
        unreadable, valid = world.credential(issuer=issuer, issuer_key=key), world.credential()
        world.ledger.go_offline()
        device = world.verifier.authenticate_presentation(
            world.present(credentials=[unreadable, valid]), AUDIENCE
        )
        assert device.credential.id == valid["id"]

    def test_when_none_passes_a_ledger_failure_is_raised_before_a_definite_refusal(
        self, world: World
    ) -> None:
        """The ledger might let the unreadable one in once it answers: the device is told to retry,
        not that it is revoked."""
        world.ledger.set_status(world.issuer, "rev", world.index)
        other = world.credential(index=(world.index + 1) % 131_072)
        world.verifier.authenticate_presentation(world.present(credentials=[other]), AUDIENCE)  # cached
        issuer, key = self._other_issuer(world)
        unreadable, revoked = world.credential(issuer=issuer, issuer_key=key), world.credential()
        world.ledger.go_offline()
        with pytest.raises(Refused) as raised:
            _by_presentation(world, world.present(credentials=[revoked]))
        assert raised.value.reason is Reason.REVOKED  # (what the cache knows, offline)
        with pytest.raises(Refused) as raised:
            _by_presentation(world, world.present(credentials=[revoked, unreadable]))
        assert raised.value.reason is Reason.LEDGER_UNAVAILABLE

    def test_at_most_max_candidates_are_checked(self, world: World) -> None:
        from verifier._checks import MAX_CANDIDATES

        world.ledger.set_status(world.issuer, "rev", world.index)
        revoked = [world.credential() for _ in range(MAX_CANDIDATES)]
        valid = world.credential(index=(world.index + 1) % 131_072)
        with pytest.raises(Refused) as raised:  # the valid one comes too late to be looked at
            _by_presentation(world, world.present(credentials=[*revoked, valid]))
        assert raised.value.reason is Reason.REVOKED
        device = world.verifier.authenticate_presentation(
            world.present(credentials=[*revoked[1:], valid]), AUDIENCE
        )
        assert device.credential.id == valid["id"]


def test_requests_at_once_in_an_ended_session_are_each_told_why() -> None:
    """A gone session's note is read, not taken and given back: requests at the same moment each find
    it (with a take, the others between the take and the give-back were told session_unknown)."""
    from verifier import MemoryNonceStore

    class SlowStore(MemoryNonceStore):  # a store a round trip away: a take takes a while
        def take(self, namespace: str, value: str) -> bytes | None:
            data = super().take(namespace, value)
            time.sleep(0.05)
            return data

    ledger, clock = StaticLedger(), Clock()
    issuer_key, key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    issuer = ledger.add_issuer(issuer_key)
    ledger.create_status_list(issuer, "rev", "revocation")
    ledger.create_status_list(issuer, "sus", "suspension")
    did = ledger.add_device(key)
    verifier = ledger.verifier(
        Policy(), clock=clock, sessions=MemorySessionStore(clock=clock), nonces=SlowStore(clock=clock)
    )
    world = World(ledger, clock, verifier, issuer_key, issuer, key, did, 7)
    offer = verifier.authenticate_request(world.signed(), AUDIENCE).session
    assert offer is not None
    verifier.end_sessions(did, "ended by the operator")
    requests = [world.session_request(offer) for _ in range(4)]
    barrier, reasons = threading.Barrier(len(requests)), []

    def send(request: HttpRequest) -> None:
        barrier.wait()
        with pytest.raises(Refused) as refused:
            verifier.authenticate_request(request, AUDIENCE)
        reasons.append(refused.value.reason)

    threads = [threading.Thread(target=send, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert reasons == [Reason.SESSION_ENDED] * len(requests)
