"""The enrolment API: devices enrol (``POST /api/v1/enrol``); automation manages provisioning tokens.

- ``POST /api/v1/enrol`` is public: the provisioning token in the body is the credential. It takes
  no cookies, so it needs no CSRF token. Refusals (unknown, used or expired token, a transaction that
  proves no key) are counted per client address in the sign-in failure table (:mod:`web.ratelimit`,
  key ``enrol:<address>``): after :data:`ENROL_MAX_FAILURES` within the portal's ``login_window``
  that address gets 429 with ``Retry-After`` until the failures age out. Each request is counted
  before its token is checked (as a sign-in is), so requests sent together cannot all be checked.
- ``POST /api/v1/enrol/batch`` (admin, operator, API token): a factory line's gateway hands in many
  devices' ``{token, txn}`` at once; they are anchored in batched ledger writes
  (:meth:`~web.enrolment.Enrolment.enrol_many`), and each item gets its own result or problem.
- ``POST /api/v1/tokens`` (admin, operator) creates tokens and returns their payloads, once;
  ``GET /api/v1/tokens?status=&limit=&offset=`` (admin, operator, auditor) lists tokens (hashes only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from sqlalchemy.engine import Connection
from sqlmodel import Session

from did_registry.client import LedgerUnavailable
from web import audit, ratelimit
from web.db import session as db_session
from web.enrol_forms import FormError, parse_count, parse_hours, parse_profile
from web.enrolment import Enrolled
from web.enrolment_records import EnrolmentResult, InvalidEnrolmentRequest, InvalidToken, ProvisioningToken
from web.models import Role, iso_utc, utcnow
from web.portal import portal
from web.problems import ApiProblem
from web.security import load_token_operator, public, role_required

__all__ = ["ENROL_MAX_FAILURES", "MAX_ENROL_BATCH", "TOKEN_STATES", "device_bp", "bp", "token_json"]

MAX_ENROL_BATCH: Final = 5000
"""The most devices one ``POST /api/v1/enrol/batch`` enrols."""

ENROL_MAX_FAILURES: Final = 20
"""Refused enrolments per client address within the window before it is rate limited."""
TOKEN_STATES: Final = ("issued", "claimed", "used", "expired")
"""The ``status`` values ``GET /api/v1/tokens`` filters on."""
DEVICE_ACTOR: Final = "device"
"""The audit actor of an enrolment (a device, authenticated by its provisioning token)."""

device_bp = Blueprint("enrol_api", __name__, url_prefix="/api/v1")
"""The device-facing enrolment endpoint (public; the provisioning token authenticates)."""
bp = Blueprint("tokens_api", __name__, url_prefix="/api/v1")
"""Provisioning tokens for automation (API token authenticated)."""
bp.before_request(load_token_operator)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status=status, mimetype="application/json")


def _body() -> dict[str, Any]:
    if not request.is_json:
        raise ApiProblem(415, "unsupported_media_type", "send the request as application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiProblem(400, "malformed", "the body must be a JSON object")
    return body


def _begin_attempt(keys: Sequence[str]) -> list[int]:
    """Count an enrolment attempt under ``keys`` before its token is checked: the attempt's rows (to
    forget unless it is refused); a 429 problem, nothing counted, when a key is over its limit with
    the attempts counted before it (:func:`web.ratelimit.begin_attempt`, as the sign-in form)."""
    window, now = portal().config.login_window, utcnow()
    with db_session() as db:
        wait = ratelimit.retry_after(db, keys, max_failures=ENROL_MAX_FAILURES, window=window, now=now)
        if wait is None:
            attempt = ratelimit.begin_attempt(
                db, keys, max_failures=ENROL_MAX_FAILURES, window=window, now=now
            )
            if attempt is not None:
                return attempt
            # others were counted first (requests sent together): over the limit now
            wait = ratelimit.retry_after(db, keys, max_failures=ENROL_MAX_FAILURES, window=window, now=now)
    seconds = wait or max(1, int(window.total_seconds()))
    raise ApiProblem(429, "too_many_requests", f"too many refused or repeated enrolments; retry in {seconds} s",
                     headers={"Retry-After": str(seconds)})  # fmt: skip


@device_bp.post("/enrol")
@public
def enrol() -> ResponseReturnValue:
    """Enrol a device: ``{"token", "txn"}`` → 201 ``{"did", "credential"}``, or a problem.

    The attempt is counted against the address *before* the token is checked
    (:func:`web.ratelimit.begin_attempt`), so requests sent together cannot all be checked; it stays
    counted when the token or transaction is refused or the enrolment is repeated, and is forgotten
    otherwise (enrolled, a malformed body, the ledger unavailable)."""
    keys = [ratelimit.enrol_key(request.remote_addr)]
    attempt = _begin_attempt(keys)
    failed = False  # whether the attempt stays counted, as a refusal
    try:
        body = _body()
        token, txn = body.get("token"), body.get("txn")
        if not isinstance(token, str) or not isinstance(txn, dict):
            raise ApiProblem(400, "malformed", 'the body must be {"token": <string>, "txn": <object>}')
        try:
            result = portal().services.enrolment.enrol(token, txn, on_enrolled=_audited(DEVICE_ACTOR))
        except (InvalidToken, InvalidEnrolmentRequest):
            failed = True
            raise
        except LedgerUnavailable as exc:
            raise ApiProblem(503, "ledger_unavailable", f"the ledger cannot be reached: {exc}") from None
        # a repeat gets the same answer again: counted like a refusal (anyone holding the printed
        # token and the public transaction can ask), and not audited again (the enrolment was, with
        # its device's row)
        failed = result.repeated
    finally:
        if not failed:
            with db_session() as db:
                ratelimit.forget_attempt(db, attempt)
    return _json(result.to_json(), 201)


def _audited(actor: str | None, **more: Any) -> Enrolled:
    """The enrolment's hook auditing each device it records as ``device.enrol`` (by ``actor``, the
    signed-in operator when ``None``; ``more`` added to the detail), in the same database
    transaction as the device's row: an enrolment stands audited, or not at all."""

    def audited(connection: Connection, enrolled: Sequence[tuple[EnrolmentResult, str, str]]) -> None:
        with Session(bind=connection) as db:  # joins the transaction recording the devices
            for result, token_hash, txn_id in enrolled:
                audit.record("device.enrol", result.did, txn_id=txn_id, actor=actor, db=db,
                             detail={"token": token_hash, "credential": result.credential_id, **more})  # fmt: skip
            db.flush()

    return audited


@bp.post("/enrol/batch")
@role_required(Role.ADMIN, Role.OPERATOR)
def enrol_batch() -> ResponseReturnValue:
    """Enrol many devices: ``{"items": [{"token", "txn"}, ...]}`` → 200 ``{"results": [...]}``, one
    ``{"did", "credential"}`` or problem object per item, in order. An item repeating a completed
    enrolment (the same token and device: a batch sent again after its answer was lost) gets the same
    answer again."""
    items = _body().get("items")
    if (
        not isinstance(items, list)
        or not 1 <= len(items) <= MAX_ENROL_BATCH
        or not all(
            isinstance(i, dict) and isinstance(i.get("token"), str) and isinstance(i.get("txn"), dict)
            for i in items
        )
    ):
        raise ApiProblem(
            400, "malformed", f'the body must be {{"items": [1 to {MAX_ENROL_BATCH} {{"token", "txn"}}]}}'
        )

    try:  # each chunk's devices audited as they are recorded: a later chunk's failure leaves them audited
        outcomes = portal().services.enrolment.enrol_many(
            [(i["token"], i["txn"]) for i in items], on_enrolled=_audited(None, batch=True)
        )
    except LedgerUnavailable as exc:
        raise ApiProblem(503, "ledger_unavailable", f"the ledger cannot be reached: {exc}") from None
    results: list[dict[str, Any]] = []
    enrolled = repeated = 0  # a device repeating its completed enrolment gets the same answer again
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            results.append({"status": outcome.status, "code": outcome.code, "detail": str(outcome)})
        else:
            results.append(outcome.to_json())
            repeated += outcome.repeated
            enrolled += not outcome.repeated
    audit.record("device.enrol_batch", f"{enrolled} of {len(items)}",
                 detail={"enrolled": enrolled, "repeated": repeated,
                         "refused": len(items) - enrolled - repeated})  # fmt: skip
    return _json({"results": results})


def token_json(token: ProvisioningToken) -> dict[str, Any]:
    """A token as the API lists it (its id is the SHA-256 of its value; the value only when just created)."""
    data: dict[str, Any] = {
        "id": token.token_hash,
        "model": token.profile.model,
        "firmware": token.profile.firmware,
        "attributes": dict(token.profile.attributes),
        "created": iso_utc(token.created),
        "expires": iso_utc(token.expires),
        "status": token.status,
        "device": token.device_did,
    }
    if token.token is not None and token.payload is not None:
        data["token"] = token.token
        data["payload"] = token.payload.to_json()
    return data


def _int_arg(name: str, default: int, high: int) -> int:
    text = request.args.get(name, "")
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) > high:
        raise ApiProblem(400, "malformed", f"query parameter {name!r} must be an integer from 0 to {high}")
    return int(text)


@bp.get("/tokens")
@role_required(Role.ADMIN, Role.OPERATOR, Role.AUDITOR)
def tokens() -> ResponseReturnValue:
    """Provisioning tokens, newest first: ``?status=issued|claimed|used|expired&limit=&offset=``."""
    status = request.args.get("status") or None
    if status is not None and status not in TOKEN_STATES:
        raise ApiProblem(400, "malformed", f"status must be one of {', '.join(TOKEN_STATES)}")
    limit = max(1, _int_arg("limit", 100, 1000))
    offset = _int_arg("offset", 0, 10**9)
    found = portal().services.enrolment.tokens(status=status, limit=limit, offset=offset)
    return _json({"tokens": [token_json(token) for token in found]})


@bp.post("/tokens")
@role_required(Role.ADMIN, Role.OPERATOR)
def create_tokens() -> ResponseReturnValue:
    """Create tokens: ``{"model", "firmware", "attributes"?, "count"?, "validity_hours"?}`` → 201."""
    body = _body()
    attributes = body.get("attributes", {})
    try:
        if not isinstance(attributes, dict):
            raise FormError("attributes", "attributes must be a JSON object")
        profile = parse_profile(body.get("model"), body.get("firmware"), attributes)
        count = parse_count(body.get("count", 1))
        hours = parse_hours(body.get("validity_hours", 24))
    except FormError as exc:
        raise ApiProblem(400, "invalid_input", exc.message, field=exc.field) from None
    made = portal().services.enrolment.create_tokens(profile, count, timedelta(hours=hours))
    audit.record("enrolment.tokens_create", profile.model,
                 detail={"count": count, "firmware": profile.firmware, "validity_hours": hours, "via": "api"})  # fmt: skip
    return _json({"tokens": [token_json(token) for token in made]}, 201)
