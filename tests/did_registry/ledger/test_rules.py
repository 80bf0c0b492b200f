"""Every transaction type, every permission refusal, replays: the rule table in action."""

from __future__ import annotations

import dataclasses

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.identity.jcs import canonicalize
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger import rules
from did_registry.ledger.rules import preverify
from did_registry.ledger.state import StateView, decode_value
from did_registry.ledger.txn import Transaction, signing_input
from tests.did_registry.ledger.conftest import Network, new_actor


def _state(net: Network, key: str) -> object:
    raw = net.app.store.get(key)
    return None if raw is None else decode_value(raw)


class TestDIDs:
    def test_create_with_endorsement(self, net: Network) -> None:
        """A self-certifying DID endorsed by a trustee is created at version 1."""
        device = net.onboard()
        record = _state(net, f"did:{device.did}")
        assert record["version"] == 1 and record["endorser"] == net.trustee.did  # type: ignore[index]

    @pytest.mark.parametrize(
        "extra",
        [{}, {"service": [{"id": "#s", "type": "X", "serviceEndpoint": {"é": [1.5, 2, "\u2028"]}}]}],
    )
    def test_created_record_is_canonical_with_the_document_as_sent(
        self, net: Network, extra: dict[str, object]
    ) -> None:
        """The DID record stored (both keys) is the JCS of the record, its document the one the
        transaction carried, whatever the document holds."""
        device = new_actor()
        document = {**device.document(), **extra}
        net.accept(device.txn("did.create", {"document": document}, net.trustee))
        raw = net.app.store.get(f"did:{device.did}")
        assert raw is not None and raw == canonicalize(decode_value(raw))
        assert decode_value(raw)["document"] == document
        assert net.app.store.get(f"didv:{device.did}:1") == raw

    def test_create_without_endorsement_is_forbidden(self, net: Network) -> None:
        """A DID that signs its own creation alone is refused: forbidden."""
        device = new_actor()
        rejection = net.reject(device.txn("did.create", {"document": device.document()}))
        assert rejection.code == "forbidden"
        assert net.app.store.get(f"did:{device.did}") is None

    def test_create_by_plain_did_endorsement_is_forbidden(self, net: Network) -> None:
        """An endorser without the trustee, steward or issuer role cannot endorse."""
        nobody = net.onboard()
        device = new_actor()
        assert (
            net.reject(device.txn("did.create", {"document": device.document()}, nobody)).code == "forbidden"
        )

    def test_create_not_self_certifying_is_forbidden(self, net: Network) -> None:
        """A DID whose id does not derive from its signing key is refused."""
        device, impostor = new_actor(), new_actor()
        builder = DIDDocumentBuilder(device.did)
        builder.add_verification_method(
            impostor.key.public_key,
            fragment="key-1",
            relationships=("authentication", "capabilityInvocation"),
        )
        # signed by the impostor's key, which the document lists, but the id derives from another key
        txn = Transaction.build(
            "did.create",
            network="testnet",
            submitter=device.did,
            nonce=1,
            body={"document": builder.to_json()},
        )
        txn = txn.signed(impostor.key, f"{device.did}#key-1").signed(net.trustee.key, net.trustee.method)
        assert net.reject(txn).code == "forbidden"

    def test_create_twice_is_a_conflict(self, net: Network) -> None:
        """Creating an existing DID again is a conflict."""
        device = net.onboard()
        assert (
            net.reject(device.txn("did.create", {"document": device.document()}, net.trustee)).code
            == "conflict"
        )

    def test_create_for_another_network_is_malformed(self, net: Network) -> None:
        """A transaction naming another network is malformed."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, net.trustee)
        data = txn.to_json()
        data["network"] = "othernet"
        assert net.reject(Transaction.from_json(data)).code == "malformed"

    def test_update_rotates_key_and_keeps_history(self, net: Network) -> None:
        """An update signed by the current key replaces the document; both versions stay."""
        device = net.onboard()
        new_key = Ed25519PrivateKey.generate()
        builder = DIDDocumentBuilder(device.did)
        builder.add_verification_method(
            new_key.public_key, fragment="key-2", relationships=("authentication", "capabilityInvocation")
        )
        net.accept(device.txn("did.update", {"document": builder.to_json()}))
        assert _state(net, f"did:{device.did}")["version"] == 2  # type: ignore[index]
        assert _state(net, f"didv:{device.did}:1")["document"] == device.document()  # type: ignore[index]
        # the old key can no longer sign
        assert net.reject(device.txn("did.deactivate", {})).code == "bad_signature"

    def test_update_by_another_did_is_forbidden(self, net: Network) -> None:
        """Another DID cannot update a document it does not control."""
        device, other = net.onboard(), net.onboard()
        txn = other.txn("did.update", {"document": device.document()})
        assert net.reject(txn).code in {"malformed", "forbidden"}

    def test_update_must_keep_an_invocation_key(self, net: Network) -> None:
        """A document with no capabilityInvocation key of its own would lock the DID: malformed."""
        device = net.onboard()
        builder = DIDDocumentBuilder(device.did)
        builder.add_verification_method(
            device.key.public_key, fragment="key-1", relationships=("authentication",)
        )
        assert net.reject(device.txn("did.update", {"document": builder.to_json()})).code == "malformed"

    def test_a_document_mentioning_deactivated_does_not_silence_its_did(self, net: Network) -> None:
        """Only the record's own member says a DID is deactivated, not a member inside its document."""
        device = net.onboard()
        document = {
            **device.document(),
            "service": [{"id": "#s", "type": "X", "serviceEndpoint": {"deactivated": True}}],
        }
        net.accept(device.txn("did.update", {"document": document}))
        net.accept(device.txn("did.update", {"document": device.document()}))
        assert _state(net, f"did:{device.did}")["version"] == 3  # type: ignore[index]

    def test_deactivate_is_final(self, net: Network) -> None:
        """After deactivation the DID can neither update nor sign anything."""
        device = net.onboard()
        net.accept(device.txn("did.deactivate", {}))
        assert _state(net, f"did:{device.did}")["deactivated"] is True  # type: ignore[index]
        assert net.reject(device.txn("did.update", {"document": device.document()})).code in {
            "conflict",
            "bad_signature",
        }


class TestPreverify:
    @staticmethod
    def _counting(monkeypatch: pytest.MonkeyPatch, txn: Transaction) -> list[bytes]:
        """Record every Ed25519 verification of a signature over ``txn`` from now on."""
        checked: list[bytes] = []
        original = Ed25519PublicKey.verify
        wanted = signing_input(txn.id_bytes)

        def counting(self: Ed25519PublicKey, message: bytes, signature: bytes) -> None:
            if message == wanted:
                checked.append(signature)
            original(self, message, signature)

        monkeypatch.setattr(Ed25519PublicKey, "verify", counting)
        return checked

    def test_preverified_signatures_are_not_checked_again(
        self, net: Network, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Signatures checked ahead by preverify are not verified again when the transaction executes."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, net.trustee)
        checked = self._counting(monkeypatch, txn)
        preverify(StateView(net.app.store), txn)
        assert len(checked) == 2  # the device's own and the trustee's
        net.accept(txn)
        assert len(checked) == 2

    def test_preverify_decides_nothing(self, net: Network, monkeypatch: pytest.MonkeyPatch) -> None:
        """A forged endorsement and a signer not on the ledger pass preverify silently; execution
        still refuses both, and nothing is written."""
        device, stranger = new_actor(), new_actor()
        forged = device.txn("did.create", {"document": device.document()}, net.trustee)
        bad = dataclasses.replace(
            forged.signatures[1], signature=dataclasses.replace(forged.signatures[0]).signature
        )
        forged = dataclasses.replace(forged, signatures=(forged.signatures[0], bad))
        unknown = device.txn("did.create", {"document": device.document()}, stranger)
        for txn in (forged, unknown):
            preverify(StateView(net.app.store), txn)
            assert net.reject(txn).code == "bad_signature"
        assert net.app.store.get(f"did:{device.did}") is None

    def test_parsed_documents_are_kept_within_their_bytes(
        self, net: Network, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The memo of parsed documents holds at most its bytes of transactions (a sender chooses
        their size): past them, the oldest are forgotten."""
        monkeypatch.setattr(rules, "_PARSED", rules._ParsedDocuments(100, 2_500))
        txns = []
        for _ in range(3):
            device = new_actor()
            txns.append(device.txn("did.create", {"document": device.document()}, net.trustee))
            preverify(StateView(net.app.store), txns[-1])
        assert len(txns[0].canonical) > 800  # so three do not fit
        kept = [t.id_bytes in rules._PARSED._parsed for t in txns]
        assert kept[-1] and not kept[0]

    def test_a_committed_document_is_forgotten_and_a_late_check_ahead_passes_it_by(
        self, net: Network, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Once its block commits, a did.create's parsed document leaves the rules' memo; a check ahead
        that comes after (still queued when the block committed) neither parses nor verifies it."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, net.trustee)
        preverify(StateView(net.app.store), txn)
        assert txn.id_bytes in rules._PARSED._parsed
        net.accept(txn)
        assert txn.id_bytes not in rules._PARSED._parsed
        checked = self._counting(monkeypatch, txn)
        parsed: list[object] = []
        original = DIDDocument.from_json.__func__  # type: ignore[attr-defined]
        monkeypatch.setattr(
            DIDDocument,
            "from_json",
            classmethod(lambda cls, data: parsed.append(data) or original(cls, data)),
        )
        preverify(StateView(net.app.store), txn)
        assert checked == [] and parsed == []
        assert txn.id_bytes not in rules._PARSED._parsed


class TestReplay:
    def test_replayed_transaction_is_refused(self, net: Network) -> None:
        """The same transaction a second time is a replay."""
        issuer = net.onboard("issuer")
        txn = issuer.txn("status_list.create", {"list": "1", "purpose": "revocation"})
        net.accept(txn)
        assert net.reject(txn).code == "replay"

    def test_old_nonce_is_refused(self, net: Network) -> None:
        """A new transaction with a nonce not above the last used one is a replay."""
        issuer = net.onboard("issuer")
        net.accept(issuer.txn("status_list.create", {"list": "1", "purpose": "revocation"}, nonce=10))
        assert (
            net.reject(
                issuer.txn("status_list.create", {"list": "2", "purpose": "revocation"}, nonce=10)
            ).code
            == "replay"
        )

    def test_duplicate_in_one_block_is_refused(self, net: Network) -> None:
        """A transaction twice in one batch is accepted once."""
        issuer = net.onboard("issuer")
        txn = issuer.txn("status_list.create", {"list": "1", "purpose": "revocation"})
        executed = net.run(txn, txn)
        assert len(executed.block.txns) == 1 and executed.rejected[0][1].code == "replay"


class TestRoles:
    def test_trustee_grants_and_revokes(self, net: Network) -> None:
        """A trustee grants the issuer role and revokes it."""
        issuer = net.onboard("issuer")
        assert _state(net, f"role:{issuer.did}") == ["issuer"]
        net.accept(net.trustee.txn("role.revoke", {"did": issuer.did, "role": "issuer"}))
        assert _state(net, f"role:{issuer.did}") is None

    @pytest.mark.parametrize("role", ["trustee", "steward"])
    def test_steward_cannot_grant_high_roles(self, net: Network, role: str) -> None:
        """A steward may not make trustees or stewards."""
        steward, target = net.onboard("steward"), net.onboard()
        assert net.reject(steward.txn("role.grant", {"did": target.did, "role": role})).code == "forbidden"

    def test_steward_grants_issuer(self, net: Network) -> None:
        """A steward may make issuers."""
        steward, target = net.onboard("steward"), net.onboard()
        net.accept(steward.txn("role.grant", {"did": target.did, "role": "issuer"}))

    def test_unknown_role_is_malformed(self, net: Network) -> None:
        """Granting a role that does not exist is malformed."""
        target = net.onboard()
        assert (
            net.reject(net.trustee.txn("role.grant", {"did": target.did, "role": "king"})).code == "malformed"
        )

    def test_last_trustee_cannot_be_revoked(self, net: Network) -> None:
        """The network keeps at least one trustee."""
        txn = net.trustee.txn("role.revoke", {"did": net.trustee.did, "role": "trustee"})
        assert net.reject(txn).code == "conflict"

    def test_a_deactivated_trustee_does_not_count_as_the_last_one(self, net: Network) -> None:
        """With a second trustee deactivated, the first is still the last who can sign: not revocable."""
        second = net.onboard("trustee")
        net.accept(second.txn("did.deactivate", {}))
        txn = net.trustee.txn("role.revoke", {"did": net.trustee.did, "role": "trustee"})
        assert net.reject(txn).code == "conflict"

    def test_a_deactivated_did_s_roles_can_be_revoked(self, net: Network) -> None:
        second = net.onboard("trustee")
        net.accept(second.txn("did.deactivate", {}))
        net.accept(net.trustee.txn("role.revoke", {"did": second.did, "role": "trustee"}))
        assert _state(net, "trustees") == [net.trustee.did]

    def test_the_last_active_trustee_cannot_deactivate(self, net: Network) -> None:
        assert net.reject(net.trustee.txn("did.deactivate", {})).code == "conflict"
        assert _state(net, f"did:{net.trustee.did}")["deactivated"] is False  # type: ignore[index]

    def test_grant_to_unknown_did_is_not_found(self, net: Network) -> None:
        """Roles go only to DIDs on the ledger."""
        assert (
            net.reject(net.trustee.txn("role.grant", {"did": new_actor().did, "role": "issuer"})).code
            == "not_found"
        )


class TestStatusLists:
    def test_issuer_creates_and_updates(self, net: Network) -> None:
        """An issuer creates a list and sets thousands of bits in one transaction."""
        issuer = net.onboard("issuer")
        net.accept(issuer.txn("status_list.create", {"list": "rev-1", "purpose": "revocation"}))
        net.accept(issuer.txn("status_list.update", {"list": "rev-1", "set": list(range(0, 50_000, 7))}))
        assert _state(net, f"status:{issuer.did}:rev-1")["version"] == 2  # type: ignore[index]

    def test_non_issuer_cannot_create(self, net: Network) -> None:
        """Only issuers keep status lists."""
        nobody = net.onboard()
        assert (
            net.reject(nobody.txn("status_list.create", {"list": "x", "purpose": "revocation"})).code
            == "forbidden"
        )

    def test_revocation_cannot_be_cleared(self, net: Network) -> None:
        """Clearing bits of a revocation list is forbidden."""
        issuer = net.onboard("issuer")
        net.accept(issuer.txn("status_list.create", {"list": "r", "purpose": "revocation"}))
        net.accept(issuer.txn("status_list.update", {"list": "r", "set": [5]}))
        assert net.reject(issuer.txn("status_list.update", {"list": "r", "clear": [5]})).code == "forbidden"

    def test_suspension_can_be_cleared(self, net: Network) -> None:
        """Suspension bits can be set and cleared."""
        issuer = net.onboard("issuer")
        net.accept(issuer.txn("status_list.create", {"list": "s", "purpose": "suspension"}))
        net.accept(issuer.txn("status_list.update", {"list": "s", "set": [5]}))
        net.accept(issuer.txn("status_list.update", {"list": "s", "clear": [5]}))

    def test_an_issuer_whose_role_is_revoked_cannot_change_its_lists(self, net: Network) -> None:
        """Trustees take a compromised issuer's role away: its lists are frozen as they were."""
        issuer = net.onboard("issuer")
        net.accept(issuer.txn("status_list.create", {"list": "s", "purpose": "suspension"}))
        net.accept(issuer.txn("status_list.update", {"list": "s", "set": [5]}))
        net.accept(net.trustee.txn("role.revoke", {"did": issuer.did, "role": "issuer"}))
        before = net.app.store.get(f"status:{issuer.did}:s")
        assert net.reject(issuer.txn("status_list.update", {"list": "s", "clear": [5]})).code == "forbidden"
        assert net.app.store.get(f"status:{issuer.did}:s") == before

    def test_out_of_range_index_changes_nothing(self, net: Network) -> None:
        """An index beyond the list refuses the whole update."""
        issuer = net.onboard("issuer")
        net.accept(issuer.txn("status_list.create", {"list": "r", "purpose": "revocation"}))
        before = net.app.store.get(f"status:{issuer.did}:r")
        assert (
            net.reject(issuer.txn("status_list.update", {"list": "r", "set": [1, 131_072]})).code
            == "malformed"
        )
        assert net.app.store.get(f"status:{issuer.did}:r") == before


class TestTrustAndQuarantine:
    def test_accredit_and_withdraw(self, net: Network) -> None:
        """Trustees accredit an issuer for credential types and withdraw them."""
        issuer = net.onboard("issuer")
        net.accept(net.trustee.txn("trust.accredit", {"issuer": issuer.did, "types": ["DeviceCredential"]}))
        assert _state(net, f"trust:{issuer.did}") == ["DeviceCredential"]
        net.accept(net.trustee.txn("trust.withdraw", {"issuer": issuer.did, "types": ["DeviceCredential"]}))
        assert _state(net, f"trust:{issuer.did}") is None

    @pytest.mark.parametrize("how", ["role revoked", "deactivated"])
    def test_accreditation_ends_with_the_issuer_role_or_the_did(self, net: Network, how: str) -> None:
        issuer = net.onboard("issuer")
        net.accept(net.trustee.txn("trust.accredit", {"issuer": issuer.did, "types": ["DeviceCredential"]}))
        if how == "role revoked":
            net.accept(net.trustee.txn("role.revoke", {"did": issuer.did, "role": "issuer"}))
        else:
            net.accept(issuer.txn("did.deactivate", {}))
        assert _state(net, f"trust:{issuer.did}") is None

    def test_non_trustee_cannot_accredit(self, net: Network) -> None:
        """An issuer cannot accredit itself."""
        issuer = net.onboard("issuer")
        txn = issuer.txn("trust.accredit", {"issuer": issuer.did, "types": ["DeviceCredential"]})
        assert net.reject(txn).code == "forbidden"

    def test_accrediting_a_non_issuer_is_a_conflict(self, net: Network) -> None:
        """Only holders of the issuer role can be accredited."""
        plain = net.onboard()
        txn = net.trustee.txn("trust.accredit", {"issuer": plain.did, "types": ["DeviceCredential"]})
        assert net.reject(txn).code == "conflict"

    def test_report_and_clear_by_endorser(self, net: Network) -> None:
        """A reporter quarantines a device; the device's endorser (its issuer) clears it."""
        issuer, reporter = net.onboard("issuer"), net.onboard("reporter")
        device = net.onboard(endorser=issuer)
        evidence = {"hash": "ab" * 32, "description": "flooded the gateway with forged readings"}
        net.accept(reporter.txn("quarantine.report", {"did": device.did, "evidence": evidence}))
        assert _state(net, f"quarantine:{device.did}")["reporter"] == reporter.did  # type: ignore[index]
        net.accept(issuer.txn("quarantine.clear", {"did": device.did}))
        assert _state(net, f"quarantine:{device.did}") is None

    def test_an_endorser_whose_role_is_revoked_cannot_clear(self, net: Network) -> None:
        issuer, reporter = net.onboard("issuer"), net.onboard("reporter")
        device = net.onboard(endorser=issuer)
        evidence = {"hash": "ab" * 32, "description": "forged readings"}
        net.accept(reporter.txn("quarantine.report", {"did": device.did, "evidence": evidence}))
        net.accept(net.trustee.txn("role.revoke", {"did": issuer.did, "role": "issuer"}))
        assert net.reject(issuer.txn("quarantine.clear", {"did": device.did})).code == "forbidden"
        assert _state(net, f"quarantine:{device.did}") is not None

    def test_non_reporter_cannot_report(self, net: Network) -> None:
        """Only reporters file quarantine reports."""
        device, nobody = net.onboard(), net.onboard()
        evidence = {"hash": "ab" * 32, "description": "x"}
        assert (
            net.reject(nobody.txn("quarantine.report", {"did": device.did, "evidence": evidence})).code
            == "forbidden"
        )

    def test_stranger_cannot_clear(self, net: Network) -> None:
        """Someone who is neither trustee nor endorser cannot clear a quarantine."""
        reporter, device, stranger = net.onboard("reporter"), net.onboard(), net.onboard("issuer")
        net.accept(
            reporter.txn(
                "quarantine.report", {"did": device.did, "evidence": {"hash": "cd" * 32, "description": "y"}}
            )
        )
        assert net.reject(stranger.txn("quarantine.clear", {"did": device.did})).code == "forbidden"

    @pytest.mark.parametrize(
        "evidence", [{}, {"hash": "xyz", "description": "d"}, {"hash": "ab" * 32, "description": ""}]
    )
    def test_bad_evidence_is_malformed(self, net: Network, evidence: dict[str, str]) -> None:
        """Evidence is a SHA-256 hex hash and a description."""
        reporter, device = net.onboard("reporter"), net.onboard()
        assert (
            net.reject(reporter.txn("quarantine.report", {"did": device.did, "evidence": evidence})).code
            == "malformed"
        )


class TestValidators:
    def test_add_takes_effect_at_its_height(self, net: Network) -> None:
        """A validator added for height h is in the set from block h, not before."""
        key = Ed25519PrivateKey.generate()
        target = net.app.height + 3
        validator = {
            "id": "node-2",
            "public_key": encode_ed25519_public_key(key.public_key),
            "address": "127.0.0.1:7002",
        }
        net.accept(net.trustee.txn("validator.add", {"validator": validator, "effective_height": target}))
        assert net.app.validators().n == 1
        net.accept()
        assert net.app.validators().n == 2  # the next block (target) needs the new set

    def test_non_trustee_cannot_change_validators(self, net: Network) -> None:
        """Validator changes need trustee signatures."""
        steward = net.onboard("steward")
        txn = steward.txn("validator.remove", {"id": "node-1", "effective_height": net.app.height + 5})
        assert net.reject(txn).code == "forbidden"

    def test_removing_the_last_validator_is_a_conflict(self, net: Network) -> None:
        """The set never becomes empty."""
        txn = net.trustee.txn("validator.remove", {"id": "node-1", "effective_height": net.app.height + 5})
        assert net.reject(txn).code == "conflict"
