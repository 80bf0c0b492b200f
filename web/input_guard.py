"""The portal takes no U+0000 (NUL) in a request's path, query string or form: one check before every view.

PostgreSQL cannot hold NUL in text (psycopg refuses it with a ``DataError``), so a NUL reaching a
query or a row (a sign-in's username, the device list's filters, a DID in the path, a token's label)
made a 500 on a PostgreSQL portal, while SQLite took it. No value the portal accepts holds one, so
:func:`refuse_nul` refuses the whole request first, the same on both databases: a 400 problem
(``malformed``, with ``field`` naming the query or form field) under ``/api/``, a 400 page elsewhere;
no view runs, so nothing is read or written. JSON bodies are checked by their own validation, field
by field.
"""

from __future__ import annotations

from typing import Final

from flask import request

from web.problems import ApiProblem

__all__ = ["NUL", "refuse_nul"]

NUL: Final = "\x00"
"""The character no request may hold."""


def _offending_field() -> tuple[str, str | None] | None:
    """Where the current request holds a NUL: ``(part, field name)``, or ``None``."""
    if NUL in request.path:
        return "path", None
    for name, value in request.args.items(multi=True):
        if NUL in name or NUL in value:
            return "query string", name.replace(NUL, "")
    for name, value in request.form.items(multi=True):
        if NUL in name or NUL in value:
            return "form", name.replace(NUL, "")
    for name, upload in request.files.items(multi=True):
        if NUL in name or NUL in (upload.filename or ""):
            return "form", name.replace(NUL, "")
    return None


def refuse_nul() -> None:
    """Before each request: refuse (400) one whose path, query string or form (field names, values, file
    names) holds a NUL character, before any view reads it."""
    found = _offending_field()
    if found is None:
        return
    part, field = found[0], None if found[1] is None else found[1][:100]
    where = f"The {part}" if field is None else f"The {part} field {field!r}"
    detail = f"{where} holds a NUL character (U+0000), which the portal does not accept; nothing was changed."
    raise ApiProblem(400, "malformed", detail, field=field)
