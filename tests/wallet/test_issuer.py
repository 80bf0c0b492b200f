"""The issuer: status entries, random never-repeated indices, revoke / suspend / reinstate."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from did_registry.errors import StatusIndexError
from tests.wallet.conftest import Identity, KeyRing
from wallet import issuer as issuer_module
from wallet.credential import verify_credential
from wallet.errors import CredentialStatusRefused, IssuerError
from wallet.issuer import Issuer
from wallet.status import StatusListChecker, StatusUnavailable
from wallet.status_index import permuted_index
from wallet.storage import StatusListRow, open_engine


def _issuer(keyring: KeyRing, url: str = "sqlite://", identity: Identity | None = None) -> Issuer:
    identity = identity or keyring.new()
    return Issuer(
        did=identity.did,
        key=identity.key,
        verification_method=identity.method,
        engine=open_engine(url),
        status_base_url="https://issuer.example/status",
    )


def _checker(keyring: KeyRing, *issuers: Issuer) -> StatusListChecker:
    def source(url: str) -> dict[str, Any]:
        for issuer in issuers:
            if url in issuer.status_list_urls():
                return issuer.status_list_credential(url)
        raise LookupError(url)

    return StatusListChecker(source, keyring.lookup)


def test_issued_credential_carries_both_status_entries(keyring: KeyRing) -> None:
    """A credential has a revocation and a suspension entry at the same index."""
    issuer = _issuer(keyring)
    credential = issuer.issue({"id": "did:example:device-1"}, types=["DeviceCredential"])
    entries = credential["credentialStatus"]
    assert [e["statusPurpose"] for e in entries] == ["revocation", "suspension"]
    assert entries[0]["statusListIndex"] == entries[1]["statusListIndex"]
    assert int(entries[0]["statusListIndex"]) == issuer.status(credential["id"]).index


def test_revocation_is_seen_by_the_status_check(keyring: KeyRing) -> None:
    """Verify passes, then after revoke() the same credential is refused as revoked."""
    issuer = _issuer(keyring)
    credential = issuer.issue({"id": "did:example:device-1"})
    check = _checker(keyring, issuer)
    verify_credential(credential, keyring.lookup, status_check=check)
    issuer.revoke(credential["id"])
    with pytest.raises(CredentialStatusRefused) as failure:
        verify_credential(credential, keyring.lookup, status_check=check)
    assert failure.value.check == "revoked"


def test_suspend_then_reinstate(keyring: KeyRing) -> None:
    """A suspended credential is refused as suspended and accepted again once reinstated."""
    issuer = _issuer(keyring)
    credential = issuer.issue({"id": "did:example:device-1"})
    check = _checker(keyring, issuer)
    issuer.suspend(credential["id"])
    with pytest.raises(CredentialStatusRefused) as failure:
        verify_credential(credential, keyring.lookup, status_check=check)
    assert failure.value.check == "suspended"
    issuer.reinstate(credential["id"])
    verify_credential(credential, keyring.lookup, status_check=check)


def test_revocation_is_final(keyring: KeyRing) -> None:
    """Reinstating or re-revoking a revoked credential is an error and changes nothing."""
    issuer = _issuer(keyring)
    credential = issuer.issue({"id": "did:example:device-1"})
    issuer.revoke(credential["id"])
    with pytest.raises(IssuerError):
        issuer.reinstate(credential["id"])
    with pytest.raises(IssuerError):
        issuer.revoke(credential["id"])
    assert issuer.status(credential["id"]).revoked


def test_unknown_credential_changes_nothing(keyring: KeyRing) -> None:
    """Revoking a batch with one unknown id fails and leaves every bit as it was."""
    issuer = _issuer(keyring)
    credential = issuer.issue({"id": "did:example:device-1"})
    with pytest.raises(IssuerError):
        issuer.revoke(credential["id"], "urn:uuid:not-issued")
    assert not issuer.status(credential["id"]).revoked
    url = issuer.status(credential["id"]).revocation_list
    assert issuer.status_list(url).count_nonzero() == 0


def test_subject_without_id_is_refused(keyring: KeyRing) -> None:
    """A subject with no id cannot be issued a device credential."""
    with pytest.raises(IssuerError):
        _issuer(keyring).issue({"model": "TH-1"})


def test_status_list_from_another_issuer_is_not_trusted(keyring: KeyRing) -> None:
    """A status list signed by a different issuer cannot decide a credential's status."""
    honest, impostor = _issuer(keyring), _issuer(keyring)
    credential = honest.issue({"id": "did:example:device-1"})
    impostor.issue({"id": "did:example:device-2"})
    url = credential["credentialStatus"][0]["statusListCredential"]
    check = StatusListChecker(lambda _: impostor.status_list_credential(url), keyring.lookup)
    with pytest.raises(StatusUnavailable):
        verify_credential(credential, keyring.lookup, status_check=check)


def test_a_status_list_of_a_trusted_status_issuer_decides(keyring: KeyRing) -> None:
    """Another party may issue the status list (Bitstring Status List §2.2 'MAY be different'): a
    list signed by a DID trusted for the credential's issuer decides its status; an untrusted one
    still does not."""
    honest, authority = _issuer(keyring), _issuer(keyring)
    credential = honest.issue({"id": "did:example:device-1"})
    authority.issue({"id": "did:example:device-2"})

    def source(url: str) -> dict[str, Any]:  # the authority keeps lists at the same addresses
        return authority.status_list_credential(url)

    trusting = StatusListChecker(source, keyring.lookup, status_issuers={honest.did: [authority.did]})
    verify_credential(credential, keyring.lookup, status_check=trusting)
    other = StatusListChecker(source, keyring.lookup, status_issuers={honest.did: ["did:example:someone"]})
    with pytest.raises(StatusUnavailable):
        verify_credential(credential, keyring.lookup, status_check=other)


def test_unreachable_status_list_is_not_a_pass(keyring: KeyRing) -> None:
    """When the status list cannot be fetched, the status is unavailable, never assumed fine."""
    issuer = _issuer(keyring)
    credential = issuer.issue({"id": "did:example:device-1"})

    def offline(url: str) -> dict[str, Any]:
        raise ConnectionError("ledger unreachable")

    with pytest.raises(StatusUnavailable):
        verify_credential(credential, keyring.lookup, status_check=StatusListChecker(offline, keyring.lookup))


def test_permutation_never_repeats_an_index() -> None:
    """Every counter value of a 131,072-entry list maps to a distinct index inside the list."""
    length = 131_072
    indices = {permuted_index(b"k" * 32, counter, length) for counter in range(length)}
    assert len(indices) == length
    assert min(indices) == 0
    assert max(indices) == length - 1


def test_indices_are_not_sequential(keyring: KeyRing) -> None:
    """Consecutive credentials get scattered indices (herd privacy, §6)."""
    issuer = _issuer(keyring)
    indices = [issuer.status(issuer.issue({"id": f"did:example:{i}"})["id"]).index for i in range(20)]
    assert len(set(indices)) == 20
    assert indices != sorted(indices)


def test_allocation_survives_reopening(keyring: KeyRing, tmp_path: Path) -> None:
    """An issuer reopened on the same database goes on without reusing an index."""
    url = f"sqlite:///{tmp_path / 'issuer.db'}"
    identity = keyring.new()
    first = _issuer(keyring, url, identity)
    ids = [first.issue({"id": f"did:example:{i}"})["id"] for i in range(5)]
    second = _issuer(keyring, url, identity)
    ids += [second.issue({"id": f"did:example:{i}"})["id"] for i in range(5, 10)]
    assert len({second.status(i).index for i in ids}) == 10


def test_full_list_rolls_over_to_a_new_pair(keyring: KeyRing) -> None:
    """When every index of the current lists is handed out, the next credential opens a new pair."""
    issuer = _issuer(keyring)
    first = issuer.issue({"id": "did:example:1"})
    with Session(issuer.engine) as session:
        for url in issuer.status_list_urls():
            row = session.get(StatusListRow, url)
            assert row is not None
            row.allocated = row.length
            session.add(row)
        session.commit()
    second = issuer.issue({"id": "did:example:2"})
    assert issuer.status(second["id"]).revocation_list != issuer.status(first["id"]).revocation_list
    assert len(issuer.status_list_urls()) == 4


def test_set_bits_by_index_revokes_and_suspends(keyring: KeyRing) -> None:
    """Revoking and suspending by index reach the credential's status and its verification."""
    issuer = _issuer(keyring)
    credential = issuer.issue({"id": "did:example:1"})
    status = issuer.status(credential["id"])
    issuer.set_bits(status.suspension_list, [status.index], True)
    assert issuer.status(credential["id"]).suspended
    issuer.set_bits(status.suspension_list, [status.index], False)
    issuer.set_bits(status.revocation_list, [status.index, 0, 131_071], True)
    assert issuer.status(credential["id"]).revoked
    with pytest.raises(CredentialStatusRefused):
        verify_credential(credential, keyring.lookup, status_check=_checker(keyring, issuer))


def test_set_bits_is_all_or_nothing(keyring: KeyRing) -> None:
    """One index out of range refuses the whole update and no bit changes."""
    issuer = _issuer(keyring)
    credential = issuer.issue({"id": "did:example:1"})
    url = issuer.status(credential["id"]).revocation_list
    with pytest.raises(StatusIndexError):
        issuer.set_bits(url, [1, 2, 131_072], True)
    assert issuer.status_list(url).count_nonzero() == 0


def test_revocation_bits_cannot_be_cleared(keyring: KeyRing) -> None:
    """Clearing bits of a revocation list is refused."""
    issuer = _issuer(keyring)
    credential = issuer.issue({"id": "did:example:1"})
    status = issuer.status(credential["id"])
    issuer.set_bits(status.revocation_list, [status.index], True)
    with pytest.raises(IssuerError):
        issuer.set_bits(status.revocation_list, [status.index], False)
    assert issuer.status(credential["id"]).revoked


def test_a_batch_is_issued_in_one_go_with_distinct_indices_and_the_status_of_each(keyring: KeyRing) -> None:
    """issue_many signs one credential per subject; each one's returned status is what status() says."""
    issuer = _issuer(keyring)
    issued = issuer.issue_many([{"id": f"did:example:{n}"} for n in range(50)], types=["DeviceCredential"])
    assert [c["credentialSubject"]["id"] for c, _ in issued] == [f"did:example:{n}" for n in range(50)]
    assert len({status.index for _, status in issued}) == 50
    for credential, status in issued[:5]:
        assert issuer.status(credential["id"]) == status
        assert str(status.index) in {e["statusListIndex"] for e in credential["credentialStatus"]}


def test_a_batch_that_fills_the_lists_rolls_over_to_a_new_pair_midway(keyring: KeyRing) -> None:
    """When the current lists run out inside a batch, the rest of the batch goes to a new pair."""
    issuer = _issuer(keyring)
    issuer.issue({"id": "did:example:first"})
    with Session(issuer.engine) as session:
        for url in issuer.status_list_urls():
            row = session.get(StatusListRow, url)
            assert row is not None
            row.allocated = row.length - 2
            session.add(row)
        session.commit()
    issued = issuer.issue_many([{"id": f"did:example:{n}"} for n in range(5)])
    lists = [status.revocation_list for _, status in issued]
    assert lists[0] == lists[1] != lists[2] == lists[3] == lists[4]


def test_a_batch_with_one_subject_without_an_id_issues_nothing(keyring: KeyRing) -> None:
    issuer = _issuer(keyring)
    with pytest.raises(IssuerError):
        issuer.issue_many([{"id": "did:example:1"}, {"name": "no id"}])
    assert issuer.status_list_urls() == []


def _in_parallel(calls: list[Any]) -> list[BaseException]:
    """Run ``calls`` at once from as many threads; the exceptions they raised."""
    start = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Any) -> None:
        start.wait()
        try:
            call()
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def test_issuers_of_one_did_issuing_at_once_give_distinct_indices(keyring: KeyRing, tmp_path: Path) -> None:
    """Many threads, each with its own Issuer of one DID on one database (as a portal's requests have),
    issue at the same moment: every credential is issued, no index twice."""
    url = f"sqlite:///{tmp_path / 'issuer.db'}"
    identity = keyring.new()
    issuers = [_issuer(keyring, url, identity) for _ in range(8)]
    issued: list[str] = []

    def issue(issuer: Issuer, n: int) -> None:
        for _, status in issuer.issue_many([{"id": f"did:example:{n}-{i}"} for i in range(5)]):
            issued.append(status.credential_id)

    assert _in_parallel([lambda i=i, n=n: issue(i, n) for n, i in enumerate(issuers)]) == []
    assert len(issued) == 40
    assert len({issuers[0].status(c).index for c in issued}) == 40


def test_status_changes_made_at_once_keep_every_bit(keyring: KeyRing, tmp_path: Path) -> None:
    """Suspending credentials of one list from many threads at once loses none of the bits."""
    url = f"sqlite:///{tmp_path / 'issuer.db'}"
    identity = keyring.new()
    issuer = _issuer(keyring, url, identity)
    ids = [issuer.issue({"id": f"did:example:{i}"})["id"] for i in range(12)]
    others = [_issuer(keyring, url, identity) for _ in ids]
    assert _in_parallel([lambda o=o, c=c: o.suspend(c) for o, c in zip(others, ids, strict=True)]) == []
    [list_url] = {issuer.status(c).suspension_list for c in ids}
    bits = issuer.status_list(list_url)
    assert all(bits.get(issuer.status(c).index) == 1 for c in ids)
    assert all(issuer.status(c).suspended for c in ids)


def test_issuers_in_separate_processes_lock_the_lists_on_postgresql(
    keyring: KeyRing, postgres_url: str
) -> None:
    """Issuers that share no lock (as in two processes) still allocate distinct indices on PostgreSQL:
    the list rows are read FOR UPDATE."""
    identity = keyring.new()
    issuers = []
    for _ in range(6):
        issuers.append(_issuer(keyring, postgres_url, identity))
        issuer_module._WRITERS.clear()  # the next one gets a lock of its own, like another process's
    issuers[0].issue({"id": "did:example:first"})  # the lists exist before the race
    issued: list[str] = []

    def issue(issuer: Issuer, n: int) -> None:
        for _, status in issuer.issue_many([{"id": f"did:example:{n}-{i}"} for i in range(4)]):
            issued.append(status.credential_id)

    try:
        assert _in_parallel([lambda i=i, n=n: issue(i, n) for n, i in enumerate(issuers)]) == []
        assert len({issuers[0].status(c).index for c in issued}) == len(issued) == 24
    finally:
        for issuer in issuers:
            issuer.engine.dispose()


def test_an_undelivered_credential_is_withdrawn_and_its_index_never_given_again(keyring: KeyRing) -> None:
    issuer = _issuer(keyring)
    first = issuer.issue({"id": "did:example:1"})
    index = issuer.status(first["id"]).index
    issuer.withdraw_undelivered([first["id"]])
    with pytest.raises(IssuerError):
        issuer.status(first["id"])
    again = [issuer.status(issuer.issue({"id": f"did:example:{i}"})["id"]).index for i in range(30)]
    assert index not in again


def _two_issuers_on_one_database(keyring: KeyRing) -> tuple[Issuer, Issuer]:
    engine = open_engine("sqlite://")

    def issuer(name: str) -> Issuer:
        identity = keyring.new()
        return Issuer(
            did=identity.did,
            key=identity.key,
            verification_method=identity.method,
            engine=engine,
            status_base_url=f"https://{name}.example/status",
        )

    return issuer("a"), issuer("b")


@pytest.mark.parametrize("change", ["revoke", "suspend", "reinstate"])
def test_an_issuer_cannot_change_the_status_of_another_issuers_credential(
    keyring: KeyRing, change: str
) -> None:
    """On a shared database, revoke / suspend / reinstate of another issuer's credential is refused
    naming the credential and the issuer, and changes no bit and no row."""
    mallory, issuer = _two_issuers_on_one_database(keyring)
    credential = issuer.issue({"id": "did:example:device-1"})
    if change == "reinstate":
        issuer.suspend(credential["id"])
    before = issuer.status(credential["id"])
    bits = {url: issuer.status_list(url).to_bytes() for url in issuer.status_list_urls()}
    with pytest.raises(IssuerError, match=f"no credential {credential['id']} issued by {mallory.did}"):
        getattr(mallory, change)(credential["id"])
    assert issuer.status(credential["id"]) == before
    assert {url: issuer.status_list(url).to_bytes() for url in issuer.status_list_urls()} == bits


def test_an_issuer_cannot_read_the_status_of_another_issuers_credential(keyring: KeyRing) -> None:
    """status() of a credential another issuer issued on the same database is refused."""
    mallory, issuer = _two_issuers_on_one_database(keyring)
    credential = issuer.issue({"id": "did:example:device-1"})
    with pytest.raises(IssuerError, match=f"no credential {credential['id']} issued by {mallory.did}"):
        mallory.status(credential["id"])


def test_an_issuer_cannot_withdraw_another_issuers_credential(keyring: KeyRing) -> None:
    """withdraw_undelivered with one id of another issuer is refused and withdraws nothing."""
    mallory, issuer = _two_issuers_on_one_database(keyring)
    own = mallory.issue({"id": "did:example:device-1"})
    theirs = issuer.issue({"id": "did:example:device-2"})
    with pytest.raises(IssuerError, match=f"no credential {theirs['id']} issued by {mallory.did}"):
        mallory.withdraw_undelivered([own["id"], theirs["id"]])
    assert mallory.status(own["id"]).credential_id == own["id"]
    assert issuer.status(theirs["id"]).credential_id == theirs["id"]
