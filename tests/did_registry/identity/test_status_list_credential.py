"""Tests for did_registry.identity.status_list_credential (Bitstring Status List v1.0 §2)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.errors import InvalidStatusList, StatusIndexError
from did_registry.identity.status_list import MIN_LIST_LENGTH, BitstringStatusList
from did_registry.identity.status_list_credential import (
    CREDENTIALS_V2_CONTEXT,
    BitstringStatusListCredential,
    BitstringStatusListEntry,
    StatusMessage,
    StatusPurpose,
    StatusResult,
)

LIST_URL = "https://example.com/credentials/status/3"
ISSUER = "did:example:12345"


@pytest.fixture(scope="module")
def bsl_dir(conformance_dir: Path) -> Path:
    """The Bitstring Status List vectors."""
    return conformance_dir / "bitstring-status-list"


@pytest.fixture
def spec_credential(bsl_dir: Path) -> dict[str, Any]:
    """The §2.2 example BitstringStatusListCredential, as JSON."""
    return json.loads((bsl_dir / "spec-example-status-list-credential.json").read_text())


@pytest.fixture
def spec_entry(bsl_dir: Path) -> dict[str, Any]:
    """The credentialStatus of the spec's Appendix A.1 revocable credential."""
    return json.loads((bsl_dir / "spec-example-revocable-credential.json").read_text())["credentialStatus"]


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": f"{LIST_URL}#94567",
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": "94567",
        "statusListCredential": LIST_URL,
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not _DROP}


_DROP = object()

TWO_BIT_MESSAGES = [
    {"status": "0x0", "message": "pending_review"},
    {"status": "0x1", "message": "accepted"},
    {"status": "0x2", "message": "rejected"},
    {"status": "0x3", "message": "undefined"},
]


# --- spec examples -----------------------------------------------------------------------------


def test_spec_entries_parse_and_round_trip_exactly(bsl_dir: Path) -> None:
    """If the §2.1 example entries are parsed, their fields are read and to_json gives them back."""
    credential = json.loads((bsl_dir / "spec-example-entries-revocation-and-suspension.json").read_text())
    revocation, suspension = (BitstringStatusListEntry.from_json(e) for e in credential["credentialStatus"])
    assert revocation.status_purpose is StatusPurpose.REVOCATION
    assert revocation.status_list_index == 94567
    assert revocation.status_list_credential == "https://example.com/credentials/status/3"
    assert (suspension.status_purpose, suspension.status_list_index) == (StatusPurpose.SUSPENSION, 23452)
    assert [revocation.to_json(), suspension.to_json()] == credential["credentialStatus"]


def test_spec_revocable_credential_entry_parses(spec_entry: dict[str, Any]) -> None:
    """If the Appendix A.1 entry is parsed, it has size 1, no messages, and round-trips."""
    entry = BitstringStatusListEntry.from_json(spec_entry)
    assert (entry.status_size, entry.status_message, entry.id) == (1, (), f"{LIST_URL}#94567")
    assert entry.to_json() == spec_entry


def test_spec_status_list_credential_parses(spec_credential: dict[str, Any]) -> None:
    """If the §2.2 example credential is parsed, every field is read and the list is all zero."""
    credential = BitstringStatusListCredential.from_json(spec_credential)
    assert credential.id == LIST_URL
    assert credential.issuer == ISSUER
    assert credential.subject_id == "https://example.com/status/3#list"
    assert credential.status_purposes == (StatusPurpose.REVOCATION,)
    assert credential.valid_from == datetime(2021, 4, 5, 14, 27, 40, tzinfo=UTC)
    assert (credential.valid_until, credential.ttl) == (None, None)
    assert len(credential.status_list) == MIN_LIST_LENGTH
    assert credential.status_list.count_nonzero() == 0


def test_spec_credential_re_emitted_equals_the_original_but_for_gzip(spec_credential: dict[str, Any]) -> None:
    """If the example is parsed and emitted, the document matches it except the GZIP bytes."""
    emitted = BitstringStatusListCredential.from_json(spec_credential).to_json()
    original_list = spec_credential["credentialSubject"].pop("encodedList")
    emitted_list = emitted["credentialSubject"].pop("encodedList")
    assert emitted == spec_credential
    assert BitstringStatusList.decode(emitted_list) == BitstringStatusList.decode(original_list)


def test_spec_entry_is_valid_against_spec_list(
    spec_credential: dict[str, Any], spec_entry: dict[str, Any]
) -> None:
    """If the example entry is checked against the example list, its status is 0: valid (§3.2)."""
    result = BitstringStatusListCredential.from_json(spec_credential).status_of(
        BitstringStatusListEntry.from_json(spec_entry)
    )
    assert result == StatusResult(0, StatusPurpose.REVOCATION, None)
    assert result.valid


def test_proof_member_is_ignored(spec_credential: dict[str, Any]) -> None:
    """If the credential carries a proof, parsing ignores it and gives the same credential."""
    signed = copy.deepcopy(spec_credential)
    signed["proof"] = {"type": "DataIntegrityProof", "cryptosuite": "eddsa-jcs-2022", "proofValue": "z1"}
    assert BitstringStatusListCredential.from_json(signed) == BitstringStatusListCredential.from_json(
        spec_credential
    )


def test_extra_contexts_and_unknown_members_are_accepted(spec_credential: dict[str, Any]) -> None:
    """If the document adds the examples context and other VC members, it still parses."""
    spec_credential["@context"].append("https://www.w3.org/ns/credentials/examples/v2")
    spec_credential["name"] = "Status list 3"
    spec_credential["credentialSubject"]["note"] = "extension"
    assert BitstringStatusListCredential.from_json(spec_credential).id == LIST_URL


# --- building ----------------------------------------------------------------------------------


def _credential(**changes: Any) -> BitstringStatusListCredential:
    fields: dict[str, Any] = {
        "issuer": ISSUER,
        "status_purposes": (StatusPurpose.REVOCATION,),
        "status_list": BitstringStatusList(),
        "id": LIST_URL,
        "subject_id": f"{LIST_URL}#list",
        "valid_from": datetime(2025, 1, 1, tzinfo=UTC),
    }
    fields.update(changes)
    return BitstringStatusListCredential(**fields)


def test_built_credential_has_the_vc2_shape() -> None:
    """If a credential is built, to_json gives the unsigned VC 2.0 document of §2.2, no proof."""
    lst = BitstringStatusList()
    lst.set_many([3, 94567])
    doc = _credential(status_list=lst, valid_until=datetime(2025, 2, 1, tzinfo=UTC), ttl=300_000).to_json()
    assert doc["@context"] == [CREDENTIALS_V2_CONTEXT]
    assert doc["type"] == ["VerifiableCredential", "BitstringStatusListCredential"]
    assert (doc["id"], doc["issuer"]) == (LIST_URL, ISSUER)
    assert (doc["validFrom"], doc["validUntil"]) == ("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z")
    subject = doc["credentialSubject"]
    assert {k: v for k, v in subject.items() if k != "encodedList"} == {
        "id": f"{LIST_URL}#list",
        "type": "BitstringStatusList",
        "statusPurpose": "revocation",
        "ttl": 300_000,
    }
    assert BitstringStatusList.decode(subject["encodedList"]).nonzero() == [3, 94567]
    assert "proof" not in doc
    assert json.loads(json.dumps(doc)) == doc


def test_optional_members_are_left_out_when_unset() -> None:
    """If id, subject id, dates and ttl are not given, the document has no such members."""
    doc = BitstringStatusListCredential(ISSUER, (StatusPurpose.SUSPENSION,), BitstringStatusList()).to_json()
    assert set(doc) == {"@context", "type", "issuer", "credentialSubject"}
    assert set(doc["credentialSubject"]) == {"type", "statusPurpose", "encodedList"}


def test_several_purposes_are_written_as_an_array() -> None:
    """If a list serves revocation and suspension (Appendix A.4), statusPurpose is an array."""
    doc = _credential(status_purposes=(StatusPurpose.REVOCATION, StatusPurpose.SUSPENSION)).to_json()
    assert doc["credentialSubject"]["statusPurpose"] == ["revocation", "suspension"]


def test_purposes_given_as_strings_become_the_enum() -> None:
    """If purposes are given as plain strings, they are stored as StatusPurpose members."""
    credential = _credential(status_purposes=("suspension",))
    assert credential.status_purposes == (StatusPurpose.SUSPENSION,)
    assert type(credential.to_json()["credentialSubject"]["statusPurpose"]) is str


def test_times_are_written_in_utc() -> None:
    """If validFrom has another offset, it is written as the same instant in UTC with Z."""
    when = datetime(2025, 1, 1, 2, 30, tzinfo=timezone(timedelta(hours=2)))
    assert _credential(valid_from=when).to_json()["validFrom"] == "2025-01-01T00:30:00Z"


@given(
    st.sets(st.integers(min_value=0, max_value=MIN_LIST_LENGTH - 1), max_size=100),
    st.lists(st.sampled_from(StatusPurpose), min_size=1, max_size=4, unique=True),
    st.none() | st.integers(min_value=0, max_value=2**53),
    st.datetimes(datetime(1900, 1, 1), timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0)),
)
def test_credential_round_trip(
    indices: set[int], purposes: list[StatusPurpose], ttl: int | None, valid_from: datetime
) -> None:
    """If a credential is built, emitted and parsed, the same credential comes back."""
    lst = BitstringStatusList()
    lst.set_many(indices)
    built = _credential(status_list=lst, status_purposes=tuple(purposes), ttl=ttl, valid_from=valid_from)
    parsed = BitstringStatusListCredential.from_json(json.loads(json.dumps(built.to_json())))
    assert parsed == built
    assert parsed.status_list.nonzero() == sorted(indices)


def test_issuer_object_is_read_by_its_id(spec_credential: dict[str, Any]) -> None:
    """If issuer is an object with an id (VC 2.0 §4.7), that id is the issuer."""
    spec_credential["issuer"] = {"id": ISSUER, "name": "Example issuer"}
    assert BitstringStatusListCredential.from_json(spec_credential).issuer == ISSUER


def test_subject_type_may_be_an_array(spec_credential: dict[str, Any]) -> None:
    """If credentialSubject.type is an array including BitstringStatusList, it is accepted."""
    spec_credential["credentialSubject"]["type"] = ["BitstringStatusList"]
    assert BitstringStatusListCredential.from_json(spec_credential).id == LIST_URL


# --- status checks (§3.2) ----------------------------------------------------------------------


def test_status_of_reports_a_revoked_entry() -> None:
    """If the entry's bit is set, status_of gives status 1, not valid."""
    lst = BitstringStatusList()
    lst.set(94567)
    result = _credential(status_list=lst).status_of(BitstringStatusListEntry.from_json(_entry()))
    assert (result.status, result.valid, result.purpose) == (1, False, StatusPurpose.REVOCATION)


def test_one_list_serves_several_purposes() -> None:
    """If a list has two purposes, entries of either purpose are answered (Appendix A.4)."""
    lst = BitstringStatusList()
    lst.set(12345)
    credential = _credential(
        status_list=lst, status_purposes=(StatusPurpose.REVOCATION, StatusPurpose.SUSPENSION)
    )
    revocation = BitstringStatusListEntry.from_json(_entry())
    suspension = BitstringStatusListEntry.from_json(
        _entry(statusPurpose="suspension", statusListIndex="12345", id=f"{LIST_URL}#12345")
    )
    assert credential.status_of(revocation).valid
    assert not credential.status_of(suspension).valid


def test_status_of_refuses_a_purpose_the_list_lacks() -> None:
    """If the entry's purpose is not the list's, status_of raises (STATUS_VERIFICATION_ERROR)."""
    entry = BitstringStatusListEntry.from_json(_entry(statusPurpose="suspension"))
    with pytest.raises(InvalidStatusList, match="STATUS_VERIFICATION_ERROR"):
        _credential().status_of(entry)


def test_status_of_refuses_an_entry_for_another_list() -> None:
    """If the entry names another status list credential than this one's id, status_of raises."""
    entry = BitstringStatusListEntry.from_json(_entry(statusListCredential="https://example.com/status/4"))
    with pytest.raises(InvalidStatusList, match="statusListCredential"):
        _credential().status_of(entry)


def test_status_of_an_index_past_the_end_is_a_range_error() -> None:
    """If the entry's index is beyond the list, status_of raises StatusIndexError (RANGE_ERROR)."""
    entry = BitstringStatusListEntry.from_json(_entry(statusListIndex=str(MIN_LIST_LENGTH)))
    with pytest.raises(StatusIndexError):
        _credential().status_of(entry)


def test_status_of_refuses_a_status_size_mismatch() -> None:
    """If the entry is 2 bits wide but the list was decoded as 1-bit, status_of raises."""
    entry = BitstringStatusListEntry.from_json(
        _entry(statusPurpose="message", statusSize=2, statusMessage=TWO_BIT_MESSAGES)
    )
    with pytest.raises(InvalidStatusList, match="statusSize"):
        _credential(status_purposes=(StatusPurpose.MESSAGE,)).status_of(entry)


def test_message_status_reports_its_message() -> None:
    """If a 2-bit message entry holds 2, status_of returns the message 'rejected' (§3.2 step 14)."""
    lst = BitstringStatusList(MIN_LIST_LENGTH, status_size=2)
    lst.set(94567, 2)
    doc = _credential(status_list=lst, status_purposes=(StatusPurpose.MESSAGE,)).to_json()
    assert doc["credentialSubject"]["statusSize"] == 2
    credential = BitstringStatusListCredential.from_json(doc, status_size=2)
    entry = BitstringStatusListEntry.from_json(
        _entry(statusPurpose="message", statusSize=2, statusMessage=TWO_BIT_MESSAGES)
    )
    assert credential.status_of(entry) == StatusResult(2, StatusPurpose.MESSAGE, "rejected")


def test_subject_status_size_is_used_when_the_caller_gives_none() -> None:
    """If credentialSubject.statusSize is 2 and no size is passed, the list is read as 2-bit."""
    doc = _credential(status_list=BitstringStatusList(MIN_LIST_LENGTH, status_size=2)).to_json()
    assert BitstringStatusListCredential.from_json(doc).status_list.status_size == 2


def test_subject_status_size_conflicting_with_caller_is_refused() -> None:
    """If credentialSubject.statusSize is 2 but the entry says 1, parsing refuses the mismatch."""
    doc = _credential(status_list=BitstringStatusList(MIN_LIST_LENGTH, status_size=2)).to_json()
    with pytest.raises(InvalidStatusList, match="statusSize"):
        BitstringStatusListCredential.from_json(doc, status_size=1)


def test_one_bit_message_without_messages_reads_set_and_unset() -> None:
    """If a 1-bit message entry has no statusMessage, the messages are 'set' and 'unset' (§2.1)."""
    lst = BitstringStatusList()
    lst.set(1)
    credential = _credential(status_list=lst, status_purposes=(StatusPurpose.MESSAGE,))
    unset = BitstringStatusListEntry.from_json(_entry(statusPurpose="message", statusListIndex="0"))
    flagged = BitstringStatusListEntry.from_json(_entry(statusPurpose="message", statusListIndex="1"))
    assert (credential.status_of(unset).message, credential.status_of(flagged).message) == ("unset", "set")


# --- entries -----------------------------------------------------------------------------------


def test_entry_with_status_messages_round_trips() -> None:
    """If an entry has statusSize 2, messages and references, to_json(from_json(x)) is x."""
    raw = _entry(
        statusPurpose="message",
        statusSize=2,
        statusMessage=TWO_BIT_MESSAGES,
        statusReference="https://example.org/status-dictionary/",
    )
    entry = BitstringStatusListEntry.from_json(raw)
    assert entry.status_message[2] == StatusMessage(2, "rejected")
    assert entry.status_reference == ("https://example.org/status-dictionary/",)
    assert entry.to_json() == raw


def test_status_reference_array_round_trips() -> None:
    """If statusReference is an array of URLs, it is kept as an array."""
    refs = ["https://example.org/a", "https://example.org/b"]
    assert (
        BitstringStatusListEntry.from_json(_entry(statusReference=refs)).to_json()["statusReference"] == refs
    )


def test_hex_status_is_case_insensitive() -> None:
    """If a statusMessage status uses upper-case hex, it is read as the same number."""
    assert StatusMessage.from_json({"status": "0xA", "message": "ten"}) == StatusMessage(10, "ten")


def test_arbitrarily_large_index_is_parsed() -> None:
    """If statusListIndex is a very large base-10 string, it is parsed exactly (arbitrary size)."""
    assert BitstringStatusListEntry.from_json(_entry(statusListIndex=str(2**80))).status_list_index == 2**80


@given(
    index=st.integers(min_value=0, max_value=2**100),
    purpose=st.sampled_from(StatusPurpose),
    size=st.integers(min_value=1, max_value=4),
    with_messages=st.booleans(),
    with_id=st.booleans(),
    refs=st.lists(st.from_regex(r"https://example\.org/[a-z]{1,8}", fullmatch=True), max_size=3),
)
def test_entry_round_trip(
    index: int, purpose: StatusPurpose, size: int, with_messages: bool, with_id: bool, refs: list[str]
) -> None:
    """If any valid entry is emitted and parsed, the same entry comes back, index as a string."""
    messages = tuple(StatusMessage(v, f"m{v}") for v in range(1 << size)) if with_messages or size > 1 else ()
    entry = BitstringStatusListEntry(
        purpose, index, LIST_URL, f"{LIST_URL}#{index}" if with_id else None, size, messages, tuple(refs)
    )
    as_json = json.loads(json.dumps(entry.to_json()))
    assert as_json["statusListIndex"] == str(index)
    assert BitstringStatusListEntry.from_json(as_json) == entry


BAD_ENTRIES = [
    pytest.param(["not", "an", "object"], "credentialStatus", id="not-object"),
    pytest.param(None, "credentialStatus", id="none"),
    pytest.param(_entry(type=_DROP), "type", id="no-type"),
    pytest.param(_entry(type="StatusList2021Entry"), "type", id="other-type"),
    pytest.param(_entry(type=["BitstringStatusListEntry"]), "type", id="type-array"),
    pytest.param(_entry(statusListIndex=_DROP), "statusListIndex", id="no-index"),
    pytest.param(_entry(statusListIndex=94567), "statusListIndex", id="index-number"),
    pytest.param(_entry(statusListIndex=""), "statusListIndex", id="index-empty"),
    pytest.param(_entry(statusListIndex="-1"), "statusListIndex", id="index-negative"),
    pytest.param(_entry(statusListIndex="+1"), "statusListIndex", id="index-plus"),
    pytest.param(_entry(statusListIndex="007"), "statusListIndex", id="index-leading-zero"),
    pytest.param(_entry(statusListIndex="0x10"), "statusListIndex", id="index-hex"),
    pytest.param(_entry(statusListIndex="1.0"), "statusListIndex", id="index-decimal"),
    pytest.param(_entry(statusListIndex="1e3"), "statusListIndex", id="index-exponent"),
    pytest.param(_entry(statusListIndex=" 1"), "statusListIndex", id="index-space"),
    pytest.param(_entry(statusListIndex="1\n"), "statusListIndex", id="index-newline"),
    pytest.param(_entry(statusListIndex="\u0663"), "statusListIndex", id="index-arabic-digit"),
    pytest.param(_entry(statusListIndex="1_000"), "statusListIndex", id="index-underscore"),
    pytest.param(_entry(statusListIndex="9" * 40), "statusListIndex", id="index-absurdly-long"),
    pytest.param(_entry(statusPurpose=_DROP), "statusPurpose", id="no-purpose"),
    pytest.param(_entry(statusPurpose="revoked"), "statusPurpose", id="unknown-purpose"),
    pytest.param(_entry(statusPurpose="Revocation"), "statusPurpose", id="purpose-case"),
    pytest.param(_entry(statusPurpose=["revocation"]), "statusPurpose", id="purpose-array"),
    pytest.param(_entry(statusListCredential=_DROP), "statusListCredential", id="no-list-url"),
    pytest.param(_entry(statusListCredential="status/3"), "statusListCredential", id="relative-url"),
    pytest.param(_entry(statusListCredential="https://a b"), "statusListCredential", id="url-space"),
    pytest.param(_entry(statusListCredential=3), "statusListCredential", id="url-number"),
    pytest.param(_entry(id=LIST_URL), "must not be the URL", id="id-is-list-url"),
    pytest.param(_entry(id="not a url"), "id", id="id-not-url"),
    pytest.param(_entry(statusSize=0), "statusSize", id="size-zero"),
    pytest.param(_entry(statusSize=-1), "statusSize", id="size-negative"),
    pytest.param(_entry(statusSize="2"), "statusSize", id="size-string"),
    pytest.param(_entry(statusSize=1.0), "statusSize", id="size-float"),
    pytest.param(_entry(statusSize=True), "statusSize", id="size-bool"),
    pytest.param(_entry(statusSize=9), "statusSize", id="size-too-wide"),
    pytest.param(_entry(statusSize=2), "statusMessage must be present", id="size-2-no-messages"),
    pytest.param(_entry(statusSize=2, statusMessage=TWO_BIT_MESSAGES[:3]), "exactly once", id="too-few"),
    pytest.param(_entry(statusMessage=TWO_BIT_MESSAGES), "exactly once", id="too-many-for-1-bit"),
    pytest.param(
        _entry(statusMessage=[{"status": "0x0", "message": "a"}, {"status": "0x0", "message": "b"}]),
        "exactly once",
        id="duplicate-status",
    ),
    pytest.param(_entry(statusMessage={"status": "0x0"}), "statusMessage", id="messages-not-array"),
    pytest.param(_entry(statusMessage=["0x0", "0x1"]), "statusMessage item", id="message-not-object"),
    pytest.param(
        _entry(statusMessage=[{"status": "0", "message": "a"}, {"status": "0x1", "message": "b"}]),
        "hexadecimal",
        id="status-not-0x",
    ),
    pytest.param(
        _entry(statusMessage=[{"status": 0, "message": "a"}, {"status": "0x1", "message": "b"}]),
        "hexadecimal",
        id="status-number",
    ),
    pytest.param(
        _entry(statusMessage=[{"status": "0x0"}, {"status": "0x1", "message": "b"}]),
        "message must be a string",
        id="message-missing",
    ),
    pytest.param(_entry(statusReference=5), "statusReference", id="reference-number"),
    pytest.param(_entry(statusReference=[]), "statusReference", id="reference-empty-array"),
    pytest.param(_entry(statusReference=["not a url"]), "statusReference", id="reference-not-url"),
]


@pytest.mark.parametrize(("raw", "match"), BAD_ENTRIES)
def test_bad_entries_are_refused(raw: Any, match: str) -> None:
    """If an entry breaks §2.1 in any way, InvalidStatusList names the offending property."""
    with pytest.raises(InvalidStatusList, match=match):
        BitstringStatusListEntry.from_json(raw)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"status_purpose": "revoked"}, "statusPurpose"),
        ({"status_list_index": -1}, "statusListIndex"),
        ({"status_list_index": "5"}, "statusListIndex"),
        ({"status_list_index": True}, "statusListIndex"),
        ({"status_size": 3}, "statusMessage must be present"),
        ({"status_reference": ("nope",)}, "statusReference"),
    ],
)
def test_entry_constructor_validates_too(fields: dict[str, Any], match: str) -> None:
    """If an entry is built in code with a bad field, the constructor refuses it like the parser."""
    base: dict[str, Any] = {
        "status_purpose": StatusPurpose.REVOCATION,
        "status_list_index": 5,
        "status_list_credential": LIST_URL,
    }
    with pytest.raises(InvalidStatusList, match=match):
        BitstringStatusListEntry(**(base | fields))


# --- bad credentials ---------------------------------------------------------------------------


def _spoil(path: str, value: Any) -> Any:
    """A function that sets (or, for _DROP, deletes) one member of the spec example."""

    def spoil(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for key in parents:
            target = target[key]
        if value is _DROP:
            del target[last]
        else:
            target[last] = value

    return spoil


BAD_CREDENTIALS = [
    ("@context", _DROP, "@context"),
    ("@context", "https://www.w3.org/ns/credentials/v2", "@context"),
    ("@context", [], "@context"),
    ("@context", ["https://www.w3.org/2018/credentials/v1"], "@context"),
    ("@context", ["https://example.org/x", CREDENTIALS_V2_CONTEXT], "@context"),
    ("type", _DROP, "type"),
    ("type", "BitstringStatusListCredential", "type"),
    ("type", ["VerifiableCredential"], "type"),
    ("type", ["BitstringStatusListCredential"], "type"),
    ("type", ["VerifiableCredential", "StatusList2021Credential"], "type"),
    ("type", ["VerifiableCredential", "BitstringStatusListCredential", 5], "type"),
    ("issuer", _DROP, "issuer"),
    ("issuer", 12345, "issuer"),
    ("issuer", "example issuer", "issuer"),
    ("issuer", {"name": "no id"}, "issuer"),
    ("id", "status/3", "id"),
    ("validFrom", "2021-04-05", "validFrom"),
    ("validFrom", "2021-04-05T14:27:40", "validFrom"),
    ("validFrom", "2021-04-05 14:27:40Z", "validFrom"),
    ("validFrom", "2021-13-05T14:27:40Z", "validFrom"),
    ("validFrom", 1617632860, "validFrom"),
    ("validUntil", "2021-04-05T14:27:39Z", "validUntil must not be earlier"),
    ("credentialSubject", _DROP, "credentialSubject"),
    ("credentialSubject", [], "credentialSubject"),
    ("credentialSubject.type", _DROP, "credentialSubject.type"),
    ("credentialSubject.type", "StatusList2021", "credentialSubject.type"),
    ("credentialSubject.id", "list", "credentialSubject.id"),
    ("credentialSubject.statusPurpose", _DROP, "statusPurpose"),
    ("credentialSubject.statusPurpose", "revoked", "statusPurpose"),
    ("credentialSubject.statusPurpose", [], "statusPurpose"),
    ("credentialSubject.statusPurpose", ["revocation", "revocation"], "distinct"),
    ("credentialSubject.statusPurpose", 1, "statusPurpose"),
    ("credentialSubject.encodedList", _DROP, "encodedList"),
    ("credentialSubject.encodedList", "zH4sIAAAAAAAAA", "encodedList"),
    ("credentialSubject.encodedList", "uH4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAA", "GZIP"),
    ("credentialSubject.statusSize", 0, "statusSize"),
    ("credentialSubject.ttl", -1, "ttl"),
    ("credentialSubject.ttl", "1000", "ttl"),
    ("credentialSubject.ttl", 1.5, "ttl"),
    ("credentialSubject.ttl", True, "ttl"),
]


@pytest.mark.parametrize(("path", "value", "match"), BAD_CREDENTIALS)
def test_bad_credentials_are_refused(
    spec_credential: dict[str, Any], path: str, value: Any, match: str
) -> None:
    """If one member of the example breaks §2.2 or VC 2.0, InvalidStatusList names it."""
    _spoil(path, value)(spec_credential)
    with pytest.raises(InvalidStatusList, match=match):
        BitstringStatusListCredential.from_json(spec_credential)


@pytest.mark.parametrize("doc", [None, [], "credential", 5])
def test_credential_that_is_not_an_object_is_refused(doc: Any) -> None:
    """If the credential is not a JSON object, InvalidStatusList is raised."""
    with pytest.raises(InvalidStatusList, match="credential must be a JSON object"):
        BitstringStatusListCredential.from_json(doc)


def test_short_list_in_credential_is_a_length_error(spec_credential: dict[str, Any]) -> None:
    """If the credential's list is below the minimum entries, parsing raises the §3.2 length error."""
    with pytest.raises(InvalidStatusList, match="STATUS_LIST_LENGTH_ERROR"):
        BitstringStatusListCredential.from_json(spec_credential, status_size=2)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"valid_from": datetime(2025, 1, 1)}, "validFrom"),
        ({"valid_until": "2025-01-01T00:00:00Z"}, "validUntil"),
        ({"status_purposes": ()}, "statusPurpose"),
        ({"status_purposes": ("revoked",)}, "statusPurpose"),
        ({"status_list": b"\x00" * 16384}, "status_list"),
        ({"issuer": ""}, "issuer"),
        ({"ttl": -5}, "ttl"),
    ],
)
def test_credential_constructor_validates(fields: dict[str, Any], match: str) -> None:
    """If a credential is built with a naive time, no purpose or a bad field, it is refused."""
    with pytest.raises(InvalidStatusList, match=match):
        _credential(**fields)


def test_errors_are_value_errors() -> None:
    """If parsing fails, the error is also a ValueError (the did_registry error tree)."""
    with pytest.raises(ValueError):
        BitstringStatusListEntry.from_json(_entry(statusListIndex="x"))
