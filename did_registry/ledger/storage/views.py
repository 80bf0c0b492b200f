"""Read-only SQL views over the ledger tables, for third parties (documented in docs/sql-views.md).

Each view is written once per dialect: SQLite reads the JSON columns with ``json_extract`` and
``json_array_length``, PostgreSQL with ``->``/``->>`` on a ``CAST(... AS json)``. No view can be
written through: each one groups or joins (so PostgreSQL does not make it auto-updatable). Key
prefixes are ranges (``'did:' <= key < 'did;'``), not LIKE, which ignores case on SQLite.

``v_devices_per_issuer``     endorser, devices, active_devices — the DIDs each endorser brought on
                             (self-endorsed genesis trustees left out)
``v_revocations_over_time``  day, purpose, updates, indices_set, indices_cleared — status list updates
                             per day (UTC date of the block) and list purpose
``v_did_history``            did, version, time, height, txn, deactivated, block_hash — every version
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, text

__all__ = ["VIEWS", "create_views"]

_DEVICES = {
    "sqlite": """
SELECT json_extract(value, '$.endorser') AS endorser,
       COUNT(*) AS devices,
       SUM(CASE WHEN json_extract(value, '$.deactivated') = 0 THEN 1 ELSE 0 END) AS active_devices
FROM ledger_state
WHERE key >= 'did:' AND key < 'did;' AND json_extract(value, '$.endorser') <> substr(key, 5)
GROUP BY json_extract(value, '$.endorser')""",
    "postgresql": """
SELECT CAST(value AS json) ->> 'endorser' AS endorser,
       COUNT(*) AS devices,
       SUM(CASE WHEN CAST(value AS json) ->> 'deactivated' = 'false' THEN 1 ELSE 0 END) AS active_devices
FROM ledger_state
WHERE key >= 'did:' AND key < 'did;' AND CAST(value AS json) ->> 'endorser' <> substr(key, 5)
GROUP BY CAST(value AS json) ->> 'endorser'""",
}

_REVOCATIONS = {
    "sqlite": """
SELECT substr(t.time, 1, 10) AS day,
       COALESCE(json_extract(s.value, '$.purpose'), 'unknown') AS purpose,
       COUNT(*) AS updates,
       SUM(COALESCE(json_array_length(t.body, '$.set'), 0)) AS indices_set,
       SUM(COALESCE(json_array_length(t.body, '$.clear'), 0)) AS indices_cleared
FROM ledger_txn AS t
LEFT JOIN ledger_state AS s
       ON s.key = 'status:' || t.submitter || ':' || json_extract(t.body, '$.list')
WHERE t.type = 'status_list.update'
GROUP BY substr(t.time, 1, 10), COALESCE(json_extract(s.value, '$.purpose'), 'unknown')""",
    "postgresql": """
SELECT substr(t.time, 1, 10) AS day,
       COALESCE(CAST(s.value AS json) ->> 'purpose', 'unknown') AS purpose,
       COUNT(*) AS updates,
       SUM(COALESCE(json_array_length(CAST(t.body AS json) -> 'set'), 0)) AS indices_set,
       SUM(COALESCE(json_array_length(CAST(t.body AS json) -> 'clear'), 0)) AS indices_cleared
FROM ledger_txn AS t
LEFT JOIN ledger_state AS s
       ON s.key = 'status:' || t.submitter || ':' || (CAST(t.body AS json) ->> 'list')
WHERE t.type = 'status_list.update'
GROUP BY substr(t.time, 1, 10), COALESCE(CAST(s.value AS json) ->> 'purpose', 'unknown')""",
}

_HISTORY = """
SELECT v.did, v.version, v.time, v.height, v.txn, v.deactivated, b.hash AS block_hash
FROM ledger_did_version AS v
JOIN ledger_block AS b ON b.height = v.height"""

VIEWS: Mapping[str, Mapping[str, str]] = {
    "v_devices_per_issuer": _DEVICES,
    "v_revocations_over_time": _REVOCATIONS,
    "v_did_history": {"sqlite": _HISTORY, "postgresql": _HISTORY},
}
"""Each view's ``SELECT``, by view name and SQLAlchemy dialect name."""


def create_views(conn: Connection) -> None:
    """Create or replace every view, in the caller's transaction (SQLite or PostgreSQL): a store opened
    by a version whose views differ gets this version's (SQLite has no ``CREATE OR REPLACE VIEW``:
    a view whose stored text differs is dropped and made again; one that is already this version's is
    left alone, so opening such a store writes nothing)."""
    dialect = conn.dialect.name
    for name, by_dialect in VIEWS.items():
        select = by_dialect[dialect]
        if dialect == "postgresql":
            conn.execute(text(f"CREATE OR REPLACE VIEW {name} AS {select}"))
            continue
        wanted = f"CREATE VIEW {name} AS {select}"
        stored = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = :name"), {"name": name}
        ).scalar()
        if stored != wanted:  # (a store whose views are this version's is not written to)
            conn.execute(text(f"DROP VIEW IF EXISTS {name}"))
            conn.execute(text(wanted))
