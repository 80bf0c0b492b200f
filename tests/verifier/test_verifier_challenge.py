"""Challenge-response against a real ledger node: every check of a presentation, each refusal named."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.did_registry.ledger.conftest import new_actor
from tests.verifier.conftest_ledger import AUDIENCE, Ledger, ledger  # noqa: F401
from verifier import Policy, Reason, Refused, Verifier


@pytest.fixture
def verifier(ledger: Ledger) -> Iterator[Verifier]:  # noqa: F811
    """A verifier of the fixture's network (no background thread)."""
    made = ledger.verifier()
    yield made
    made.close()


def refusal(verifier: Verifier, presentation: object, audience: str = AUDIENCE) -> Reason:
    """The reason ``presentation`` is refused for."""
    with pytest.raises(Refused) as refused:
        verifier.authenticate_presentation(presentation, audience)
    return refused.value.reason


def test_a_good_answer_is_accepted(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """A device answering a fresh challenge with its credential is let in, with the facts it proved."""
    device = ledger.enrol()
    challenge = verifier.challenge(AUDIENCE)
    result = verifier.authenticate_presentation(ledger.present(device, challenge), AUDIENCE)
    assert result.did == device.did
    assert result.key_id == device.actor.method
    assert result.credential is not None and result.credential.issuer == ledger.issuer.did
    assert "DeviceCredential" in result.credential.types
    assert result.credential.id == device.credential["id"]
    assert result.height >= 1
    assert result.session is None


def test_the_challenge_is_what_a_device_wallet_reads(verifier: Verifier) -> None:
    """A challenge parses as wallet.device.Challenge, for the audience asked, expiring after the TTL."""
    from wallet.device import Challenge

    challenge = verifier.challenge(AUDIENCE)
    parsed = Challenge.from_json(challenge)
    assert parsed.audience == AUDIENCE and len(parsed.nonce) >= 32
    assert 0 < parsed.expires.timestamp() - verifier.clock() <= verifier.policy.challenge_ttl
    assert verifier.challenge(AUDIENCE)["nonce"] != challenge["nonce"]


def test_a_replayed_answer_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """The same answer a second time is refused: the challenge was used up."""
    device = ledger.enrol()
    answer = ledger.present(device, verifier.challenge(AUDIENCE))
    verifier.authenticate_presentation(answer, AUDIENCE)
    assert refusal(verifier, answer) is Reason.CHALLENGE_UNKNOWN


def test_an_unknown_challenge_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """An answer to a challenge this verifier never issued is refused."""
    device = ledger.enrol()
    forged = {"nonce": "not-issued-by-this-verifier", "audience": AUDIENCE}
    assert refusal(verifier, ledger.present(device, forged)) is Reason.CHALLENGE_UNKNOWN


def test_an_expired_challenge_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """An answer after the challenge's expiry is refused as expired, not unknown."""
    device = ledger.enrol()
    challenge = verifier.challenge(AUDIENCE)
    ledger.clock.advance(verifier.policy.challenge_ttl + 1)
    assert refusal(verifier, ledger.present(device, challenge)) is Reason.CHALLENGE_EXPIRED


def test_a_wrong_audience_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """A challenge issued for one audience cannot be redeemed for another, nor signed for another domain."""
    device = ledger.enrol()
    answer = ledger.present(device, verifier.challenge(AUDIENCE))
    assert refusal(verifier, answer, "https://other.example") is Reason.WRONG_AUDIENCE
    other_domain = ledger.present(device, verifier.challenge(AUDIENCE), domain="https://other.example")
    assert refusal(verifier, other_domain) is Reason.WRONG_AUDIENCE


def test_a_tampered_presentation_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """Changing a signed presentation breaks its signature."""
    device = ledger.enrol()
    answer = ledger.present(device, verifier.challenge(AUDIENCE))
    answer["id"] = "urn:uuid:added-after-signing"
    assert refusal(verifier, answer) is Reason.BAD_SIGNATURE


def test_a_key_rotated_away_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """After did.update replaces the device's key, the old key no longer authenticates; the new one does."""
    from did_registry.identity.crypto import Ed25519PrivateKey
    from did_registry.identity.did_document import DIDDocument
    from did_registry.identity.did_document_builder import DIDDocumentBuilder

    device = ledger.enrol()
    verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
    new_key = Ed25519PrivateKey.generate()
    builder = DIDDocumentBuilder(device.did)
    builder.add_verification_method(
        new_key.public_key, fragment="key-2", relationships=("authentication", "capabilityInvocation")
    )
    document = DIDDocument.from_json(builder.build().to_json())
    ledger.commit(device.actor.txn("did.update", {"document": document.to_json()}))
    verifier.caches["testnet"].catch_up()
    old = ledger.present(device, verifier.challenge(AUDIENCE))
    assert refusal(verifier, old) is Reason.KEY_NOT_AUTHORIZED
    new = ledger.present(device, verifier.challenge(AUDIENCE), key=new_key, method=f"{device.did}#key-2")
    assert verifier.authenticate_presentation(new, AUDIENCE).key_id == f"{device.did}#key-2"


def test_a_deactivated_did_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """After did.deactivate the device is refused from the next block on."""
    device = ledger.enrol()
    verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
    ledger.commit(device.actor.txn("did.deactivate", {}))
    verifier.caches["testnet"].catch_up()
    assert refusal(verifier, ledger.present(device, verifier.challenge(AUDIENCE))) is Reason.DID_DEACTIVATED


def test_a_did_not_on_the_ledger_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """A did:trellis whose absence the ledger proves is refused."""
    from tests.verifier.conftest_ledger import Device

    stranger = new_actor()
    device = Device(stranger, ledger.credential(stranger.did, 5), 5)
    assert refusal(verifier, ledger.present(device, verifier.challenge(AUDIENCE))) is Reason.DID_NOT_FOUND


def test_revoked_then_suspended_then_reinstated(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """Suspension refuses until reinstated; revocation refuses for good; each seen from the next block."""
    device, other = ledger.enrol(), ledger.enrol()
    cache = verifier.caches["testnet"]

    def answer(who: object) -> object:
        return ledger.present(who, verifier.challenge(AUDIENCE))  # type: ignore[arg-type]

    verifier.authenticate_presentation(answer(device), AUDIENCE)
    ledger.revoke(device, "sus-1")
    cache.catch_up()
    assert refusal(verifier, answer(device)) is Reason.SUSPENDED
    ledger.reinstate(device)
    cache.catch_up()
    assert verifier.authenticate_presentation(answer(device), AUDIENCE).did == device.did
    ledger.revoke(device)
    cache.catch_up()
    assert refusal(verifier, answer(device)) is Reason.REVOKED
    assert verifier.authenticate_presentation(answer(other), AUDIENCE).did == other.did


def test_a_quarantined_device_is_refused_until_cleared(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """report() files quarantine.report; the device is refused from the next block; clearing lets it in."""
    from did_registry.identity.jcs import canonicalize

    device = ledger.enrol()
    reporter = new_actor()
    trustee = ledger.node.trustee
    ledger.commit(reporter.txn("did.create", {"document": reporter.document()}, trustee))
    ledger.commit(trustee.txn("role.grant", {"did": reporter.did, "role": "reporter"}))
    verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
    txn_id = verifier.report(
        device.did, b"port scan from the device", reporter.key, reporter.did, description="scan"
    )
    value, _ = ledger.client.prove(f"quarantine:{device.did}")
    assert value["txn"] == txn_id and value["reporter"] == reporter.did
    assert value["evidence"]["description"] == "scan"
    assert len(canonicalize(value["evidence"])) > 64
    verifier.caches["testnet"].catch_up()
    assert refusal(verifier, ledger.present(device, verifier.challenge(AUDIENCE))) is Reason.QUARANTINED
    ledger.commit(trustee.txn("quarantine.clear", {"did": device.did}))
    verifier.caches["testnet"].catch_up()
    assert verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)


def test_an_issuer_without_accreditation_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """An issuer the trust registry does not accredit for the type is refused, and so after withdrawal."""
    device = ledger.enrol()
    verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
    trustee = ledger.node.trustee
    ledger.commit(trustee.txn("trust.withdraw", {"issuer": ledger.issuer.did}))
    verifier.caches["testnet"].catch_up()
    assert (
        refusal(verifier, ledger.present(device, verifier.challenge(AUDIENCE)))
        is Reason.ISSUER_NOT_ACCREDITED
    )


def test_an_explicit_issuer_list_is_honoured(ledger: Ledger) -> None:  # noqa: F811
    """With Policy(issuers=...), only the listed issuers are trusted, whatever the registry says."""
    device = ledger.enrol()
    other = new_actor().did
    with ledger.verifier(Policy(issuers=(other,))) as strict:
        answer = ledger.present(device, strict.challenge(AUDIENCE))
        assert refusal(strict, answer) is Reason.ISSUER_NOT_ACCREDITED
    with ledger.verifier(Policy(issuers=(ledger.issuer.did,))) as listed:
        assert listed.authenticate_presentation(ledger.present(device, listed.challenge(AUDIENCE)), AUDIENCE)


def test_an_untrusted_network_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """A did:trellis of a network the verifier does not trust is refused as unsupported."""
    from did_registry.identity.crypto import Ed25519PrivateKey
    from did_registry.identity.did_trellis import trellis_did
    from wallet.presentation import build_presentation, sign_presentation

    key = Ed25519PrivateKey.generate()
    did = str(trellis_did("othernet", key.public_key))
    challenge = verifier.challenge(AUDIENCE)
    answer = sign_presentation(
        build_presentation(holder=did, credentials=[]),
        key,
        f"{did}#key-1",
        challenge=challenge["nonce"],
        domain=AUDIENCE,
    )
    assert refusal(verifier, answer) is Reason.UNSUPPORTED_DID_METHOD


def test_a_gateway_batch_reads_the_ledger_once(ledger: Ledger) -> None:  # noqa: F811
    """authenticate_many reads every DID of the batch in one proven round trip and refuses items one by one."""
    import httpx

    from verifier import NetworkTrust

    devices = [ledger.enrol() for _ in range(4)]
    inner = ledger.transport()
    reads: list[str] = []

    class Counting(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/proofs/state":
                reads.append(request.content.decode())
            return inner.handle_request(request)

    trust = NetworkTrust("testnet", ("http://node-1",), ledger.genesis, transport=Counting())
    with Verifier([trust], follow=False, clock=ledger.clock) as verifier:
        verifier.caches["testnet"].catch_up()
        items: list[tuple[object, str]] = [
            (ledger.present(d, verifier.challenge(AUDIENCE)), AUDIENCE) for d in devices
        ]
        items.append(({"not": "a presentation"}, AUDIENCE))
        results = verifier.authenticate_many(items)
    assert [getattr(r, "did", None) for r in results[:4]] == [d.did for d in devices]
    assert isinstance(results[4], Refused) and results[4].reason is Reason.MALFORMED
    first = __import__("json").loads(reads[0])["keys"]
    assert {f"did:{d.did}" for d in devices} | {f"did:{ledger.issuer.did}"} == {
        k for k in first if k.startswith("did:")
    }
    assert len(reads) <= 1 + 3  # the batch's DIDs at once; then the issuer's accreditation and two lists


def test_report_evidence_forms() -> None:
    """Evidence bytes are hashed; {hash, description} is kept; other JSON is hashed canonically; a description is required."""
    import hashlib

    from did_registry.identity.jcs import canonicalize
    from verifier import ConfigurationError
    from verifier._report import evidence_body

    assert evidence_body(b"pcap", "scan") == {
        "hash": hashlib.sha256(b"pcap").hexdigest(),
        "description": "scan",
    }
    given = {"hash": "ab" * 32, "description": "flood"}
    assert evidence_body(given, None) == given
    log = {"packets": 9000, "description": "flood from device"}
    expected = hashlib.sha256(canonicalize(log)).hexdigest()
    assert evidence_body(log, None) == {"hash": expected, "description": "flood from device"}
    with pytest.raises(ConfigurationError):
        evidence_body(b"pcap", None)
    with pytest.raises(ConfigurationError):
        evidence_body(b"pcap", "x" * 2001)


def test_a_report_the_ledger_refuses_is_an_error(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """A reporter without the reporter role is refused by the ledger; report() raises VerifierError."""
    from verifier import VerifierError

    device = ledger.enrol()
    outsider = new_actor()
    ledger.commit(outsider.txn("did.create", {"document": outsider.document()}, ledger.node.trustee))
    with pytest.raises(VerifierError, match="refused"):
        verifier.report(device.did, b"evidence", outsider.key, outsider.did, description="nope")
