"""The ``enrol`` blueprint: provisioning tokens for devices, their QR codes and printable sheets.

Admins and operators create tokens for a device profile (or one per row of a CSV file). The token
values are shown only to the operator who created them, right after creation, from a short-lived
in-memory handout (:mod:`web.token_handout`): the database keeps only their hashes. Token creation
is synchronous (10,000 tokens take a few seconds); the batch page then shows how many were created.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Final

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from did_registry.errors import DidRegistryError
from web import audit
from web.enrol_forms import (
    MAX_TOKENS,
    CsvErrors,
    FormError,
    parse_count,
    parse_csv,
    parse_hours,
    parse_profile,
)
from web.enrolment_records import DeviceProfile, ProvisioningToken
from web.models import Operator, Role
from web.organisation import PortalError
from web.portal import portal
from web.qr import qr_png, qr_svg
from web.qr_sheet import parts, sheet_pdf
from web.security import current_operator, role_required
from web.token_handout import HANDOUT_TTL, Handout, handouts

__all__ = ["bp", "create_profile_tokens", "RECENT"]

RECENT: Final = 20
"""Tokens listed on the enrolment page."""
_GONE: Final = (
    "These tokens can no longer be shown: they are shown only to the operator who created them, for "
    f"{int(HANDOUT_TTL // 60)} minutes after creation. The tokens themselves stay valid."
)

bp = Blueprint("enrol", __name__)
"""Enrolment pages."""


def _me() -> Operator:
    operator = current_operator()
    assert operator is not None and operator.id is not None
    return operator


def _page(status: int = 200, **context: Any) -> ResponseReturnValue:
    services = portal().services
    recent: list[ProvisioningToken] = []
    notice = None
    if not services.configured:
        notice = (
            "The portal is not connected to a ledger yet; an admin can see what is missing on the setup page."
        )
    else:
        try:
            recent = services.enrolment.tokens(limit=RECENT)
            if not services.organisation.has_keystore:
                notice = "The organisation is not set up yet: devices cannot enrol until an admin sets it up."
        except (PortalError, DidRegistryError) as exc:
            notice = str(exc)
    form = context.pop("form", {"model": "", "firmware": "", "attributes": "", "count": "1",
                                "validity_hours": "24"})  # fmt: skip
    page = render_template(
        "enrol.html", recent=recent, notice=notice, form=form, max_tokens=MAX_TOKENS, **context
    )
    return page, status


def create_profile_tokens(profiles: list[DeviceProfile], hours: int) -> list[ProvisioningToken]:
    """One token per profile, in order; equal profiles share one database insert."""
    enrolment = portal().services.enrolment
    groups: dict[str, list[int]] = {}
    for position, profile in enumerate(profiles):
        key = json.dumps([profile.model, profile.firmware, dict(profile.attributes)], sort_keys=True)
        groups.setdefault(key, []).append(position)
    made: list[ProvisioningToken | None] = [None] * len(profiles)
    for positions in groups.values():
        tokens = enrolment.create_tokens(profiles[positions[0]], len(positions), timedelta(hours=hours))
        for position, token in zip(positions, tokens, strict=True):
            made[position] = token
    return [token for token in made if token is not None]


def _hand_out(tokens: list[ProvisioningToken], detail: dict[str, Any], target: str) -> ResponseReturnValue:
    handout = handouts().add(_me().id or 0, tokens)
    audit.record("enrolment.tokens_create", target, detail={**detail, "count": len(tokens),
                                                          "batch": handout.batch_id})  # fmt: skip
    return redirect(url_for("enrol.batch", batch_id=handout.batch_id), 303)


@bp.get("/enrol")
@role_required(Role.ADMIN, Role.OPERATOR)
def index() -> ResponseReturnValue:
    """The device profile form, the CSV upload and the latest tokens."""
    return _page()


@bp.post("/enrol")
@role_required(Role.ADMIN, Role.OPERATOR)
def create() -> ResponseReturnValue:
    """Create tokens for one device profile; bad input re-shows the form and creates nothing."""
    form = {name: request.form.get(name, "") for name in ("model", "firmware", "attributes", "count",
                                                          "validity_hours")}  # fmt: skip
    try:
        profile = parse_profile(form["model"], form["firmware"], form["attributes"])
        count, hours = parse_count(form["count"]), parse_hours(form["validity_hours"])
    except FormError as exc:
        return _page(400, form=form, errors={exc.field: exc.message})
    try:
        tokens = portal().services.enrolment.create_tokens(profile, count, timedelta(hours=hours))
    except PortalError as exc:
        return _page(exc.status, form=form, message=str(exc))
    detail = {"firmware": profile.firmware, "validity_hours": hours, "via": "form"}
    return _hand_out(tokens, detail, profile.model)


@bp.post("/enrol/csv")
@role_required(Role.ADMIN, Role.OPERATOR)
def create_from_csv() -> ResponseReturnValue:
    """Create one token per CSV row; any bad row refuses the whole file (each bad row is reported)."""
    hours_text = request.form.get("csv_validity_hours", "24")
    upload = request.files.get("profiles")
    if upload is None or not upload.filename:
        return _page(400, errors={"profiles": "choose a CSV file"})
    try:
        hours = parse_hours(hours_text)
    except FormError as exc:
        return _page(400, errors={"csv_validity_hours": exc.message})
    try:
        profiles = parse_csv(upload.read())
    except CsvErrors as exc:
        return _page(400, errors={"profiles": f"{len(exc.errors)} row(s) refused"}, csv_errors=exc.errors)
    try:
        tokens = create_profile_tokens(profiles, hours)
    except PortalError as exc:
        return _page(exc.status, message=str(exc))
    detail = {"validity_hours": hours, "via": "csv", "file": (upload.filename or "")[:100]}
    return _hand_out(tokens, detail, "csv")


def _handout(batch_id: str) -> Handout:
    """The batch ``batch_id`` this operator just created, or 404."""
    handout = handouts().batch(batch_id, _me().id or 0)
    if handout is None:
        abort(404, _GONE)
    return handout


@bp.get("/enrol/batches/<batch_id>")
@role_required(Role.ADMIN, Role.OPERATOR)
def batch(batch_id: str) -> ResponseReturnValue:
    """The tokens just created: how many, the QR code (one token) or the sheet's parts (many)."""
    handout = _handout(batch_id)
    progress = portal().services.enrolment.progress([t.token_id for t in handout.tokens])
    return render_template(
        "enrol_batch.html", handout=handout, parts=parts(len(handout.tokens)),
        minutes=int(HANDOUT_TTL // 60), listed=handout.tokens[:100], progress=progress,
    )  # fmt: skip


@bp.get("/enrol/batches/<batch_id>/progress")
@role_required(Role.ADMIN, Role.OPERATOR)
def batch_progress(batch_id: str) -> ResponseReturnValue:
    """How far the batch's devices are (JSON, polled by the batch page while devices enrol)."""
    handout = _handout(batch_id)
    counts = portal().services.enrolment.progress([t.token_id for t in handout.tokens])
    return Response(json.dumps(counts), mimetype="application/json", headers={"Cache-Control": "no-store"})


def _handed_payload(token_id: str) -> str:
    token = handouts().token(token_id, _me().id or 0)
    if token is None:
        abort(404, _GONE)
    return token.payload


@bp.get("/enrol/tokens/<token_id>/qr.png")
@role_required(Role.ADMIN, Role.OPERATOR)
def qr_image(token_id: str) -> ResponseReturnValue:
    """The QR code of a just-created token, as PNG (only for the operator who created it)."""
    return Response(qr_png(_handed_payload(token_id)), mimetype="image/png")


@bp.get("/enrol/tokens/<token_id>/qr.svg")
@role_required(Role.ADMIN, Role.OPERATOR)
def qr_vector(token_id: str) -> ResponseReturnValue:
    """The QR code of a just-created token, as SVG."""
    return Response(qr_svg(_handed_payload(token_id)), mimetype="image/svg+xml")


@bp.get("/enrol/batches/<batch_id>/sheet.pdf")
@role_required(Role.ADMIN, Role.OPERATOR)
def sheet(batch_id: str) -> ResponseReturnValue:
    """A printable PDF of the batch's QR codes: ``?part=N`` of :func:`web.qr_sheet.parts`."""
    handout = _handout(batch_id)
    part_text = request.args.get("part", "1")
    part = int(part_text) if part_text.isascii() and part_text.isdigit() and len(part_text) < 6 else 0
    try:
        pdf = sheet_pdf(handout.tokens, part)
    except ValueError as exc:
        abort(404, str(exc))
    name = f"enrolment-{batch_id[:8]}-part-{part}.pdf"
    return Response(pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip
