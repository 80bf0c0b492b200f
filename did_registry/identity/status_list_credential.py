"""The data model of W3C Bitstring Status List v1.0 (Recommendation, 15 May 2025), §2.1 and §2.2.

:class:`BitstringStatusListEntry` is the ``credentialStatus`` object of a credential (§2.1), with
``statusListIndex`` a base-10 string in JSON. :class:`BitstringStatusListCredential` is the
unsigned VC Data Model 2.0 document that publishes a list (§2.2): issuers build it (the wallet adds
the proof), verifiers parse it (a ``proof`` member is ignored here; proofs are checked elsewhere).
:meth:`BitstringStatusListCredential.status_of` runs steps 5 to 14 of the §3.2 Validate Algorithm.

Parsing is strict: a missing, mistyped or malformed value raises InvalidStatusList (the spec's
MALFORMED_VALUE_ERROR), and so does a ``statusPurpose`` other than the four of §2.1 (the spec allows
any string, but a verifier can only act on known ones); an index outside the list raises
StatusIndexError (RANGE_ERROR). Unknown members are ignored, as VC 2.0 extensibility requires.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from did_registry.errors import InvalidStatusList
from did_registry.identity.status_list import (
    MAX_DECOMPRESSED_SIZE,
    MAX_STATUS_SIZE,
    MIN_LIST_LENGTH,
    BitstringStatusList,
)
from did_registry.identity.timestamps import InvalidTimestamp, format_timestamp, parse_timestamp

__all__ = [
    "CREDENTIALS_V2_CONTEXT",
    "StatusPurpose",
    "StatusMessage",
    "StatusResult",
    "BitstringStatusListEntry",
    "BitstringStatusListCredential",
]

CREDENTIALS_V2_CONTEXT: Final = "https://www.w3.org/ns/credentials/v2"
"""The first ``@context`` of every VC Data Model 2.0 credential."""

_ENTRY_TYPE: Final = "BitstringStatusListEntry"
_CREDENTIAL_TYPES: Final = ("VerifiableCredential", "BitstringStatusListCredential")
_SUBJECT_TYPE: Final = "BitstringStatusList"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")  # an absolute URL (https:, did:, urn:, ...)
_INDEX = re.compile(r"0|[1-9][0-9]{0,30}")  # base 10, no sign, no leading zeros, no Unicode digits
_HEX_STATUS = re.compile(r"0x[0-9a-fA-F]{1,8}")


class StatusPurpose(StrEnum):
    """A ``statusPurpose`` value defined by §2.1."""

    REFRESH = "refresh"
    REVOCATION = "revocation"
    SUSPENSION = "suspension"
    MESSAGE = "message"


def _fail(name: str, problem: str, value: object) -> InvalidStatusList:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return InvalidStatusList(f"{name} {problem}, got {shown}")


def _url(value: object, name: str) -> str:
    if not isinstance(value, str) or _URL.fullmatch(value) is None:
        raise _fail(name, "must be an absolute URL", value)
    return value


def _optional_url(value: object, name: str) -> str | None:
    return None if value is None else _url(value, name)


def _purpose(value: object, name: str) -> StatusPurpose:
    if isinstance(value, str):
        try:
            return StatusPurpose(value)
        except ValueError:
            pass
    raise _fail(name, f"must be one of {', '.join(p.value for p in StatusPurpose)}", value)


def _status_size(value: object) -> int:
    if type(value) is not int or not 1 <= value <= MAX_STATUS_SIZE:
        raise _fail("statusSize", f"must be an integer from 1 to {MAX_STATUS_SIZE}", value)
    return value


def _datetime(value: object, name: str) -> datetime | None:
    try:
        return None if value is None else parse_timestamp(value)
    except InvalidTimestamp as exc:
        raise _fail(name, "must be an XML Schema dateTimeStamp with a time zone", value) from exc


def _one_or_many(value: object, name: str) -> list[object]:
    if isinstance(value, list) and value:
        return value
    if isinstance(value, str):
        return [value]
    raise _fail(name, "must be a string or a non-empty array of strings", value)


def _mapping(value: object, name: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise _fail(name, "must be a JSON object", value)
    return value


@dataclass(frozen=True)
class StatusMessage:
    """One ``statusMessage`` item (§2.1): a status value and its developer-facing message."""

    status: int
    message: str

    def __post_init__(self) -> None:
        if type(self.status) is not int or self.status < 0:
            raise _fail("statusMessage status", "must be a non-negative integer", self.status)
        if not isinstance(self.message, str):
            raise _fail("statusMessage message", "must be a string", self.message)

    def to_json(self) -> dict[str, str]:
        """Return the JSON object, ``status`` as ``0x``-prefixed hexadecimal."""
        return {"status": hex(self.status), "message": self.message}

    @classmethod
    def from_json(cls, value: object) -> StatusMessage:
        """Parse one ``statusMessage`` item."""
        item = _mapping(value, "statusMessage item")
        status = item.get("status")
        if not isinstance(status, str) or _HEX_STATUS.fullmatch(status) is None:
            raise _fail("statusMessage status", "must be a hexadecimal string such as '0x1'", status)
        return cls(int(status, 16), item.get("message"))  # type: ignore[arg-type]  # checked


@dataclass(frozen=True)
class StatusResult:
    """The §3.2 result for one entry: the status, its purpose, and the message for ``message``."""

    status: int
    purpose: StatusPurpose
    message: str | None = None

    @property
    def valid(self) -> bool:
        """Whether the status is 0 (§3.2 step 13): not revoked, not suspended, nothing flagged."""
        return self.status == 0


@dataclass(frozen=True)
class BitstringStatusListEntry:
    """A ``credentialStatus`` entry naming one index of a status list credential (§2.1)."""

    status_purpose: StatusPurpose
    status_list_index: int
    status_list_credential: str
    id: str | None = None
    status_size: int = 1
    status_message: tuple[StatusMessage, ...] = ()
    status_reference: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "status_purpose", _purpose(self.status_purpose, "statusPurpose"))
        object.__setattr__(self, "status_message", tuple(self.status_message))
        object.__setattr__(self, "status_reference", tuple(self.status_reference))
        if not all(isinstance(item, StatusMessage) for item in self.status_message):
            raise _fail("statusMessage", "must hold StatusMessage items", self.status_message)
        if type(self.status_list_index) is not int or self.status_list_index < 0:
            raise _fail("statusListIndex", "must be a non-negative integer", self.status_list_index)
        _url(self.status_list_credential, "statusListCredential")
        if _optional_url(self.id, "id") == self.status_list_credential:
            raise _fail("id", "must not be the URL of the status list (§2.1)", self.id)
        size = _status_size(self.status_size)
        if size > 1 and not self.status_message:
            raise InvalidStatusList("statusMessage must be present when statusSize > 1 (§2.1)")
        if self.status_message:
            statuses = sorted(m.status for m in self.status_message)
            if statuses != list(range(1 << size)):
                raise InvalidStatusList(
                    f"statusMessage must give each of the {1 << size} values of a {size}-bit "
                    f"status exactly once, got {statuses}"
                )
        for reference in self.status_reference:
            _url(reference, "statusReference")

    def message_for(self, status: int) -> str:
        """Return the message for ``status``: from ``statusMessage``, else ``set`` or ``unset``."""
        for item in self.status_message:
            if item.status == status:
                return item.message
        return "set" if status else "unset"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object, ``statusListIndex`` as a base-10 string."""
        out: dict[str, Any] = {} if self.id is None else {"id": self.id}
        out |= {
            "type": _ENTRY_TYPE,
            "statusPurpose": self.status_purpose.value,
            "statusListIndex": str(self.status_list_index),
            "statusListCredential": self.status_list_credential,
        }
        if self.status_size != 1:
            out["statusSize"] = self.status_size
        if self.status_message:
            out["statusMessage"] = [item.to_json() for item in self.status_message]
        if len(self.status_reference) == 1:
            out["statusReference"] = self.status_reference[0]
        elif self.status_reference:
            out["statusReference"] = list(self.status_reference)
        return out

    @classmethod
    def from_json(cls, value: object) -> BitstringStatusListEntry:
        """Parse and check a ``credentialStatus`` object of type ``BitstringStatusListEntry``."""
        entry = _mapping(value, "credentialStatus")
        if entry.get("type") != _ENTRY_TYPE:
            raise _fail("credentialStatus type", f"must be {_ENTRY_TYPE!r}", entry.get("type"))
        index = entry.get("statusListIndex")
        if not isinstance(index, str) or _INDEX.fullmatch(index) is None:
            raise _fail("statusListIndex", "must be a base-10 string of digits like '94567'", index)
        messages = entry.get("statusMessage", [])
        if not isinstance(messages, list):
            raise _fail("statusMessage", "must be an array", messages)
        references = entry.get("statusReference")
        return cls(
            status_purpose=_purpose(entry.get("statusPurpose"), "statusPurpose"),
            status_list_index=int(index),
            status_list_credential=_url(entry.get("statusListCredential"), "statusListCredential"),
            id=_optional_url(entry.get("id"), "id"),
            status_size=_status_size(entry.get("statusSize", 1)),
            status_message=tuple(StatusMessage.from_json(item) for item in messages),
            status_reference=tuple(
                _url(ref, "statusReference")
                for ref in ([] if references is None else _one_or_many(references, "statusReference"))
            ),
        )


@dataclass(frozen=True)
class BitstringStatusListCredential:
    """An unsigned ``BitstringStatusListCredential`` (§2.2) holding its decoded status list.

    ``validFrom`` and ``validUntil`` are written in UTC to the whole second (the project's
    timestamp form); ``to_json`` encodes the list afresh each time it is called.
    """

    issuer: str
    status_purposes: tuple[StatusPurpose, ...]
    status_list: BitstringStatusList
    id: str | None = None
    subject_id: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    ttl: int | None = None

    def __post_init__(self) -> None:
        _url(self.issuer, "issuer")
        purposes = tuple(_purpose(p, "statusPurpose") for p in self.status_purposes)
        if not purposes or len(set(purposes)) != len(purposes):
            raise _fail("statusPurpose", "must be one or more distinct purposes", purposes)
        object.__setattr__(self, "status_purposes", purposes)
        if not isinstance(self.status_list, BitstringStatusList):
            raise _fail("status_list", "must be a BitstringStatusList", self.status_list)
        _optional_url(self.id, "id")
        _optional_url(self.subject_id, "credentialSubject.id")
        for name, when in (("validFrom", self.valid_from), ("validUntil", self.valid_until)):
            if when is not None and (not isinstance(when, datetime) or when.tzinfo is None):
                raise _fail(name, "must be a datetime with a time zone", when)
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise InvalidStatusList("validUntil must not be earlier than validFrom")
        if self.ttl is not None and (type(self.ttl) is not int or self.ttl < 0):
            raise _fail("ttl", "must be a non-negative integer of milliseconds", self.ttl)

    def to_json(self, *, encoded_list: str | None = None) -> dict[str, Any]:
        """Return the unsigned credential document, ``encodedList`` freshly encoded (§3.1) unless
        ``encoded_list``, the list's encoding made before, is given (compressing a large list costs
        milliseconds)."""
        doc: dict[str, Any] = {"@context": [CREDENTIALS_V2_CONTEXT]}
        if self.id is not None:
            doc["id"] = self.id
        doc |= {"type": list(_CREDENTIAL_TYPES), "issuer": self.issuer}
        if self.valid_from is not None:
            doc["validFrom"] = format_timestamp(self.valid_from)
        if self.valid_until is not None:
            doc["validUntil"] = format_timestamp(self.valid_until)
        subject: dict[str, Any] = {} if self.subject_id is None else {"id": self.subject_id}
        purposes = [p.value for p in self.status_purposes]
        subject |= {"type": _SUBJECT_TYPE, "statusPurpose": purposes[0] if len(purposes) == 1 else purposes}
        if self.status_list.status_size != 1:
            subject["statusSize"] = self.status_list.status_size
        subject["encodedList"] = self.status_list.encode() if encoded_list is None else encoded_list
        if self.ttl is not None:
            subject["ttl"] = self.ttl
        doc["credentialSubject"] = subject
        return doc

    @classmethod
    def from_json(
        cls,
        value: object,
        *,
        status_size: int | None = None,
        min_length: int = MIN_LIST_LENGTH,
        max_size: int = MAX_DECOMPRESSED_SIZE,
    ) -> BitstringStatusListCredential:
        """Parse and check a status list credential, decoding its list (§3.2, §3.4).

        ``status_size`` is the entry's ``statusSize`` (1 if not given, or the subject's own
        ``statusSize``); ``min_length`` and ``max_size`` are passed to the list decoder.
        """
        doc = _mapping(value, "credential")
        context = doc.get("@context")
        if not isinstance(context, list) or not context or context[0] != CREDENTIALS_V2_CONTEXT:
            raise _fail("@context", f"must be an array starting with {CREDENTIALS_V2_CONTEXT}", context)
        types = doc.get("type")
        if (
            not isinstance(types, list)
            or not all(isinstance(t, str) for t in types)
            or not set(_CREDENTIAL_TYPES) <= set(types)
        ):
            raise _fail("type", f"must be an array including {' and '.join(_CREDENTIAL_TYPES)}", types)
        issuer = doc.get("issuer")
        issuer = _mapping(issuer, "issuer").get("id") if not isinstance(issuer, str) else issuer
        subject = _mapping(doc.get("credentialSubject"), "credentialSubject")
        subject_types = _one_or_many(subject.get("type"), "credentialSubject.type")
        if _SUBJECT_TYPE not in subject_types:
            raise _fail("credentialSubject.type", f"must be {_SUBJECT_TYPE!r}", subject.get("type"))
        purposes = _one_or_many(subject.get("statusPurpose"), "statusPurpose")
        size = status_size
        if "statusSize" in subject:
            size = _status_size(subject["statusSize"])
            if status_size is not None and status_size != size:
                raise InvalidStatusList(f"the list's statusSize is {size}, the entry's {status_size}")
        return cls(
            issuer=issuer,  # type: ignore[arg-type]  # checked in __post_init__
            status_purposes=tuple(_purpose(p, "statusPurpose") for p in purposes),
            status_list=BitstringStatusList.decode(
                subject.get("encodedList"),  # type: ignore[arg-type]  # checked by decode
                status_size=1 if size is None else size,
                min_length=min_length,
                max_size=max_size,
            ),
            id=_optional_url(doc.get("id"), "id"),
            subject_id=_optional_url(subject.get("id"), "credentialSubject.id"),
            valid_from=_datetime(doc.get("validFrom"), "validFrom"),
            valid_until=_datetime(doc.get("validUntil"), "validUntil"),
            ttl=subject.get("ttl"),  # type: ignore[arg-type]  # checked in __post_init__
        )

    def status_of(self, entry: BitstringStatusListEntry) -> StatusResult:
        """Return the status of ``entry`` in this list (§3.2 steps 5-14), refusing a mismatch."""
        if entry.status_purpose not in self.status_purposes:
            raise InvalidStatusList(
                f"entry purpose {entry.status_purpose.value!r} is not a purpose of this list "
                "(STATUS_VERIFICATION_ERROR)"
            )
        if self.id is not None and entry.status_list_credential != self.id:
            raise _fail(
                "statusListCredential", f"must name this list {self.id!r}", entry.status_list_credential
            )
        if entry.status_size != self.status_list.status_size:
            raise InvalidStatusList(
                f"entry statusSize {entry.status_size} differs from the list's "
                f"{self.status_list.status_size}: decode the list with the entry's statusSize"
            )
        status = self.status_list.get(entry.status_list_index)
        message = entry.message_for(status) if entry.status_purpose is StatusPurpose.MESSAGE else None
        return StatusResult(status, entry.status_purpose, message)
