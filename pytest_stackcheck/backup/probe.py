"""Insert one row into each restored table, in a transaction rolled back.

A restore can look complete and still refuse the application's first write,
most often because a sequence was restored behind its table's keys. Each
probe row lets every column with a default (serials, identities, timestamps)
take its default, so the sequences are exercised. Other columns copy an
existing row, which keeps foreign keys valid, except that unique integer
and text columns get a fresh value so the row does not collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_COLUMNS_SQL = """
SELECT
    quote_ident(a.attname),
    a.attnotnull,
    a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
    t.typcategory,
    EXISTS (
        SELECT 1 FROM pg_index i
        WHERE i.indrelid = a.attrelid AND i.indisunique
          AND a.attnum = ANY (i.indkey)
    )
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

# Values for NOT NULL columns of an empty table, by pg_type.typcategory.
_EMPTY_TABLE_VALUES = {
    "N": "1",
    "S": "'stackcheck probe'",
    "B": "false",
    "D": "now()",
    "T": "interval '1 second'",
    "A": "'{}'",
}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Whether one table accepted a probe row, and the error if it did not."""

    table: str
    ok: bool
    error: str = ""


def probe_inserts(conn: Any, tables: list[str]) -> list[ProbeResult]:
    """Insert one row into each of ``tables`` and roll every insert back."""
    results: list[ProbeResult] = []
    for table in tables:
        results.append(_probe(conn, table))
    return results


def _probe(conn: Any, table: str) -> ProbeResult:
    import psycopg

    statement = _insert_statement(conn, table)
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(statement)
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0]
        return ProbeResult(table, False, message)
    return ProbeResult(table, True)


def _insert_statement(conn: Any, table: str) -> str:
    # Table and column names come from quote_ident, so they are safe SQL.
    with conn.transaction(force_rollback=True):
        columns = conn.execute(_COLUMNS_SQL, (table,)).fetchall()
        has_rows = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0]

    names: list[str] = []
    values: list[str] = []
    for name, not_null, has_default, category, unique in columns:
        if has_default:
            continue
        value = _value(table, name, not_null, category, unique, has_rows)
        if value is None:
            continue
        names.append(name)
        values.append(value)

    if not names:
        return f"INSERT INTO {table} DEFAULT VALUES"
    source = f" FROM {table} AS src LIMIT 1" if has_rows else ""
    return (
        f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(values)}{source}"
    )


def _value(
    table: str, name: str, not_null: bool, category: str, unique: bool, has_rows: bool
) -> str | None:
    if unique and category == "N":
        return f"(SELECT coalesce(max({name}), 0) + 1 FROM {table})"
    if unique and category == "S":
        return "md5(random()::text)"
    if has_rows:
        return f"src.{name}"
    if not_null:
        # NOTE: a NOT NULL column of an empty table whose type has no entry
        # here is left out, so its probe fails with a not-null violation.
        return _EMPTY_TABLE_VALUES.get(category)
    return None
