"""Status lists (and their credential), the trust registry and quarantine over HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from did_registry.identity.status_list import BitstringStatusList
from did_registry.identity.status_list_credential import BitstringStatusListCredential
from did_registry.ledger.proofs import StateProof
from did_registry.ledger.storage.sql import SQLLedgerStore
from did_registry.ledger.validators import ValidatorSet
from tests.did_registry.ledger.conftest import Actor
from tests.did_registry.node.conftest import PROBLEM_JSON, Node, block_time, make_node


@pytest.fixture(params=["memory", "sql"])
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    """A node on the memory store and on SQLite (state scans in SQL)."""
    made = make_node(None if request.param == "memory" else SQLLedgerStore("sqlite://", durable=False))
    yield made
    made.service.stop()


@pytest.fixture
def issuer(node: Node) -> Actor:
    """An issuer with a revocation list ``rev`` whose bits 3 and 40000 are set (version 2, block 4)."""
    issuer = node.onboard("issuer")
    node.commit(issuer.txn("status_list.create", {"list": "rev", "purpose": "revocation"}))
    node.commit(issuer.txn("status_list.update", {"list": "rev", "set": [3, 40_000]}))
    return issuer


class TestStatusLists:
    def test_list_with_encoded_list(self, node: Node, issuer: Actor) -> None:
        """A list answers its record and an encodedList that decodes to the ledger's bits."""
        body = node.client.get(f"/status-lists/{issuer.did}/rev").get_json()
        assert {k: body[k] for k in ("issuer", "list", "purpose", "length", "version", "updated", "height")} == {
            "issuer": issuer.did, "list": "rev", "purpose": "revocation", "length": 131_072, "version": 2,
            "updated": block_time(4), "height": 4,
        }  # fmt: skip
        bits = BitstringStatusList.decode(body["encodedList"], length=131_072)
        assert bits.nonzero() == [3, 40_000]
        assert node.client.get(f"/status-lists/{issuer.did}/rev").get_json() == body  # cached, same answer

    def test_new_version_is_served_after_update(self, node: Node, issuer: Actor) -> None:
        """After another update the list's new bits are served, not a cached old encoding."""
        node.client.get(f"/status-lists/{issuer.did}/rev")
        node.commit(issuer.txn("status_list.update", {"list": "rev", "set": [9]}))
        body = node.client.get(f"/status-lists/{issuer.did}/rev").get_json()
        assert BitstringStatusList.decode(body["encodedList"]).nonzero() == [3, 9, 40_000]

    def test_credential_matches_proven_state(self, node: Node, issuer: Actor) -> None:
        """The credential's id is its URL, and its bits are those the state proof proves."""
        url = f"/status-lists/{issuer.did}/rev/credential"
        response = node.client.get(url)
        assert response.mimetype == "application/vc"
        document = response.get_json(force=True)
        credential = BitstringStatusListCredential.from_json(document)
        assert document["id"] == "http://localhost" + url and credential.issuer == issuer.did
        assert [p.value for p in credential.status_purposes] == ["revocation"]
        validators = ValidatorSet.from_json(node.client.get("/validators").get_json()["set"])
        proof = node.client.get("/proofs/state", query_string={"key": f"status:{issuer.did}:rev"}).get_json()
        proven = StateProof.from_json(proof).verify(validators)
        assert credential.status_list.to_bytes() == base64.urlsafe_b64decode(proven["bits"])

    def test_credential_encodes_each_version_of_a_list_once(
        self, node: Node, issuer: Actor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Asking for a list's credential again and again compresses its bits once per version
        (each request compressed them: up to 2 MB of bits, milliseconds a request, no key needed),
        and a new version is served fresh."""
        encodings: list[int] = []
        encode = BitstringStatusList.encode

        def counted(bits: BitstringStatusList) -> str:
            encodings.append(1)
            return encode(bits)

        monkeypatch.setattr(BitstringStatusList, "encode", counted)
        url = f"/status-lists/{issuer.did}/rev/credential"
        answers = [node.client.get(url).get_json(force=True) for _ in range(5)]
        assert len(encodings) == 1 and all(a == answers[0] for a in answers)
        node.commit(issuer.txn("status_list.update", {"list": "rev", "set": [9]}))
        fresh = node.client.get(url).get_json(force=True)
        assert len(encodings) == 2
        assert BitstringStatusList.decode(fresh["credentialSubject"]["encodedList"]).nonzero() == [
            3,
            9,
            40_000,
        ]

    def test_issuer_listing(self, node: Node, issuer: Actor) -> None:
        """An issuer's lists are listed without their bits, paged by name."""
        node.commit(issuer.txn("status_list.create", {"list": "sus", "purpose": "suspension"}))
        first = node.client.get("/status-lists", query_string={"issuer": issuer.did, "limit": 1}).get_json()
        assert [item["list"] for item in first["lists"]] == ["rev"] and first["next"] == "rev"
        assert "encodedList" not in first["lists"][0] and "bits" not in first["lists"][0]
        query = {"issuer": issuer.did, "after": first["next"]}
        second = node.client.get("/status-lists", query_string=query).get_json()
        assert [item["list"] for item in second["lists"]] == ["sus"] and second["next"] is None

    def test_listing_needs_issuer(self, node: Node) -> None:
        """Listing without an issuer is a malformed problem."""
        response = node.client.get("/status-lists")
        assert response.status_code == 400 and response.mimetype == PROBLEM_JSON

    @pytest.mark.parametrize("suffix", ["", "/credential"])
    def test_unknown_list_is_404(self, node: Node, issuer: Actor, suffix: str) -> None:
        """A list the issuer does not have is a 404 problem."""
        response = node.client.get(f"/status-lists/{issuer.did}/nope{suffix}")
        assert response.status_code == 404 and response.get_json()["code"] == "not_found"

    def test_overlong_name_is_400(self, node: Node, issuer: Actor) -> None:
        """Names beyond the bound are refused."""
        assert node.client.get(f"/status-lists/{issuer.did}/{'x' * 3000}").status_code == 400


class TestTrustRegistry:
    def test_accredited_issuer(self, node: Node, issuer: Actor) -> None:
        """An accredited issuer is listed with its credential types, and readable alone."""
        node.commit(node.trustee.txn("trust.accredit", {"issuer": issuer.did, "types": ["DeviceCredential"]}))
        listing = node.client.get("/trust-registry").get_json()
        assert listing == {"issuers": [{"issuer": issuer.did, "types": ["DeviceCredential"]}], "next": None}
        assert node.client.get(f"/trust-registry/{quote(issuer.did)}").get_json() == listing["issuers"][0]

    def test_pages(self, node: Node) -> None:
        """Entries page in key order with an ``after`` cursor."""
        issuers = [node.onboard("issuer") for _ in range(3)]
        for issuer in issuers:
            node.commit(node.trustee.txn("trust.accredit", {"issuer": issuer.did, "types": ["T"]}))
        seen, after = [], None
        for _ in range(5):
            query = {"limit": 2} if after is None else {"limit": 2, "after": after}
            page = node.client.get("/trust-registry", query_string=query).get_json()
            seen += [entry["issuer"] for entry in page["issuers"]]
            after = page["next"]
            if after is None:
                break
        assert seen == sorted(i.did for i in issuers)

    def test_unaccredited_is_404(self, node: Node) -> None:
        """An issuer without accreditation is a 404 problem."""
        response = node.client.get(f"/trust-registry/{node.trustee.did}")
        assert response.status_code == 404 and response.mimetype == PROBLEM_JSON


class TestQuarantine:
    def test_report_is_listed(self, node: Node) -> None:
        """A quarantine report is listed and readable by DID."""
        reporter, device = node.onboard("reporter"), node.onboard()
        evidence = {"hash": "ab" * 32, "description": "replayed challenge"}
        node.commit(reporter.txn("quarantine.report", {"did": device.did, "evidence": evidence}))
        listing = node.client.get("/quarantine").get_json()
        assert [e["did"] for e in listing["entries"]] == [device.did] and listing["next"] is None
        entry = node.client.get(f"/quarantine/{device.did}").get_json()
        assert entry["reporter"] == reporter.did and entry["evidence"] == evidence

    def test_not_quarantined_is_404(self, node: Node) -> None:
        """A DID without a report is a 404 problem."""
        assert node.client.get(f"/quarantine/{node.trustee.did}").status_code == 404

    @pytest.mark.parametrize("query", ["?limit=0", "?limit=101", "?after=" + "a" * 3000])
    def test_bad_page_is_400(self, node: Node, query: str) -> None:
        """Page parameters are bounded."""
        assert node.client.get(f"/quarantine{query}").status_code == 400
