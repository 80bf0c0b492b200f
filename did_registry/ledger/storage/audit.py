"""Audit queries over the SQL ledger store: transactions by filter, DID histories, block pages.

These serve the node API's audit pages (docs/ledger.md). Transaction pages use keyset pagination on
(height, position): a page ends with an opaque cursor that the next call passes back, so pages stay
stable while blocks are appended and every page costs one index range scan, however deep.
Times are the blocks' RFC 3339 times, compared as strings (every block time has the same form).
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from did_registry.errors import DidRegistryError
from did_registry.ledger.storage.models import BLOCK, DID_VERSION, TXN, txn_json
from did_registry.ledger.txn import TXN_TYPES

__all__ = ["MAX_PAGE", "InvalidQuery", "query_txns", "query_did_history", "query_blocks"]

MAX_PAGE = 1000
"""The most rows one page returns."""

_CURSOR = re.compile(r"(0|[1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,9})")


class InvalidQuery(DidRegistryError, ValueError):
    """An audit query has a bad limit, cursor, height or transaction type (the message says which)."""


def _check_limit(limit: int) -> None:
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"limit must be an integer from 1 to {MAX_PAGE}, not {limit!r}")


def _parse_cursor(cursor: str) -> tuple[int, int]:
    match = _CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise InvalidQuery(f"not a cursor this store returned: {cursor!r}")
    return int(match[1]), int(match[2])


def query_txns(
    conn: Connection,
    *,
    submitter: str | None = None,
    type: str | None = None,  # the transaction member's own name
    from_height: int | None = None,
    to_height: int | None = None,
    from_time: str | None = None,
    to_time: str | None = None,
    did: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    newest_first: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of committed transactions matching every filter given, and the next page's cursor.

    Heights and times are inclusive bounds. ``did`` matches transactions submitted by the DID or
    whose body names it (``body.did``, or ``body.issuer`` for trust.*). The cursor is ``None`` on
    the last page.
    """
    _check_limit(limit)
    if type is not None and type not in TXN_TYPES:
        raise InvalidQuery(f"unknown transaction type {type!r}")
    for name, height in (("from_height", from_height), ("to_height", to_height)):
        if height is not None and (not isinstance(height, int) or height < 0):
            raise InvalidQuery(f"{name} must be a height (an integer >= 0), not {height!r}")
    c = TXN.c
    where = []
    if submitter is not None:
        where.append(c.submitter == submitter)
    if type is not None:
        where.append(c.type == type)
    if from_height is not None:
        where.append(c.height >= from_height)
    if to_height is not None:
        where.append(c.height <= to_height)
    if from_time is not None:  # block times never decrease: a time range is a height range
        first = select(BLOCK.c.height).where(BLOCK.c.time >= from_time)
        where.append(c.height >= first.order_by(BLOCK.c.time, BLOCK.c.height).limit(1).scalar_subquery())
    if to_time is not None:
        last = select(BLOCK.c.height).where(BLOCK.c.time <= to_time)
        latest = last.order_by(BLOCK.c.time.desc(), BLOCK.c.height.desc()).limit(1)
        where.append(c.height <= latest.scalar_subquery())
    if did is not None:
        where.append(or_(c.submitter == did, c.subject == did))
    if cursor is not None:
        height, index = _parse_cursor(cursor)
        if newest_first:
            where.append(or_(c.height < height, and_(c.height == height, c.idx < index)))
        else:
            where.append(or_(c.height > height, and_(c.height == height, c.idx > index)))
    order = (c.height.desc(), c.idx.desc()) if newest_first else (c.height, c.idx)
    query = select(TXN)
    rows = conn.execute(query.where(*where).order_by(*order).limit(limit + 1)).all()
    page = [
        {
            "id": row.id,
            "height": row.height,
            "index": row.idx,
            "type": row.type,
            "submitter": row.submitter,
            "time": row.time,
            "transaction": txn_json(row),
        }
        for row in rows[:limit]
    ]
    next_cursor = f"{rows[limit - 1].height}.{rows[limit - 1].idx}" if len(rows) > limit else None
    return page, next_cursor


def query_did_history(conn: Connection, did: str) -> list[dict[str, Any]]:
    """Every version of ``did``'s record, oldest first (empty when the DID was never on the ledger)."""
    c = DID_VERSION.c
    rows = conn.execute(select(DID_VERSION).where(c.did == did).order_by(c.version)).all()
    return [
        {
            "did": row.did,
            "version": row.version,
            "height": row.height,
            "time": row.time,
            "txn": row.txn,
            "deactivated": bool(row.deactivated),
            "document": json.loads(row.document),
        }
        for row in rows
    ]


def query_blocks(conn: Connection, from_height: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    """Up to ``limit`` blocks from ``from_height`` up: hash, header and certificate (JSON)."""
    _check_limit(limit)
    if not isinstance(from_height, int) or from_height < 0:
        raise InvalidQuery(f"from_height must be a height (an integer >= 0), not {from_height!r}")
    c = BLOCK.c
    query = select(c.height, c.hash, c.header, c.certificate).where(c.height >= from_height)
    rows = conn.execute(query.order_by(c.height).limit(limit)).all()
    return [
        {
            "height": row.height,
            "hash": row.hash,
            "header": json.loads(row.header),
            "certificate": None if row.certificate is None else json.loads(row.certificate),
        }
        for row in rows
    ]
