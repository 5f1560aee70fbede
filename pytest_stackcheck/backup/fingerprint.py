"""Content fingerprints of a database, to compare a restore with its source.

A fingerprint contains the extensions and their versions, the owner of every
schema, relation and function outside extensions, and per table the row
count and an order-independent content checksum (the sum of the first 64
bits of each row's md5, over the row's text form with fixed session
settings). Tables with a single integer primary key also record their
largest key, so that a live database that kept taking writes after the dump
can be compared up to the dump's last row. Sequences record their position.
Privileges are recorded per object, with a NULL ACL read as the built-in
default for its owner (``acldefault``), because a restore writes an explicit
ACL only where pg_dump found one that differs from the default.

NOTE: large objects (pg_largeobject) are not fingerprinted, so an archive
made without them is not caught.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Session settings that fix the text form of dates, times, intervals, floats
# and bytea, so that both sides hash the same bytes for the same row.
SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
)

_USER_NAMESPACES = """
    n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%'
    AND n.nspname NOT LIKE 'pg\\_temp%'
"""

_NOT_EXTENSION_MEMBER = """
    NOT EXISTS (
        SELECT 1 FROM pg_depend d
        WHERE d.classid = {catalog}::regclass AND d.objid = {oid}
          AND d.deptype = 'e'
    )
"""

_OWNERS_SQL = f"""
SELECT 'schema ' || quote_ident(n.nspname), pg_get_userbyid(n.nspowner)
FROM pg_namespace n
WHERE {_USER_NAMESPACES}
  AND {_NOT_EXTENSION_MEMBER.format(catalog="'pg_namespace'", oid="n.oid")}
UNION ALL
SELECT
    CASE c.relkind WHEN 'S' THEN 'sequence ' WHEN 'v' THEN 'view '
        WHEN 'm' THEN 'materialized view ' WHEN 'f' THEN 'foreign table '
        ELSE 'table ' END
    || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
    pg_get_userbyid(c.relowner)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f') AND {_USER_NAMESPACES}
  AND {_NOT_EXTENSION_MEMBER.format(catalog="'pg_class'", oid="c.oid")}
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text, pg_get_userbyid(p.proowner)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE {_USER_NAMESPACES}
  AND {_NOT_EXTENSION_MEMBER.format(catalog="'pg_proc'", oid="p.oid")}
"""

# Each ACL is read as its sorted aclitem texts, such as
# "reader=r/app_owner", so that the order of GRANT statements does not matter.
_ACL_TEXT = "array_to_string(ARRAY(SELECT unnest({acl})::text ORDER BY 1), ', ')"

_RELATION_ACL = _ACL_TEXT.format(
    acl="coalesce(c.relacl, acldefault("
    "CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner))"
)

_PRIVILEGES_SQL = f"""
SELECT 'schema ' || quote_ident(n.nspname),
    {_ACL_TEXT.format(acl="coalesce(n.nspacl, acldefault('n', n.nspowner))")}
FROM pg_namespace n
WHERE {_USER_NAMESPACES}
  AND {_NOT_EXTENSION_MEMBER.format(catalog="'pg_namespace'", oid="n.oid")}
UNION ALL
SELECT
    CASE c.relkind WHEN 'S' THEN 'sequence ' WHEN 'v' THEN 'view '
        WHEN 'm' THEN 'materialized view ' WHEN 'f' THEN 'foreign table '
        ELSE 'table ' END
    || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
    {_RELATION_ACL}
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f') AND {_USER_NAMESPACES}
  AND {_NOT_EXTENSION_MEMBER.format(catalog="'pg_class'", oid="c.oid")}
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text,
    {_ACL_TEXT.format(acl="coalesce(p.proacl, acldefault('f', p.proowner))")}
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE {_USER_NAMESPACES}
  AND {_NOT_EXTENSION_MEMBER.format(catalog="'pg_proc'", oid="p.oid")}
UNION ALL
SELECT 'default privileges of ' || quote_ident(pg_get_userbyid(d.defaclrole))
    || coalesce(' in schema ' || quote_ident(n.nspname), '')
    || ' on ' || CASE d.defaclobjtype WHEN 'r' THEN 'tables'
        WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types'
        ELSE 'schemas' END,
    {_ACL_TEXT.format(acl="d.defaclacl")}
FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
"""

_TABLES_SQL = f"""
SELECT
    quote_ident(n.nspname) || '.' || quote_ident(c.relname),
    (
        SELECT quote_ident(a.attname)
        FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1
          AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
    )
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {_USER_NAMESPACES}
  AND {_NOT_EXTENSION_MEMBER.format(catalog="'pg_class'", oid="c.oid")}
ORDER BY 1
"""

_SEQUENCES_SQL = f"""
SELECT
    quote_ident(n.nspname) || '.' || quote_ident(c.relname),
    s.seqincrement,
    (
        SELECT quote_ident(tn.nspname) || '.' || quote_ident(t.relname)
            || '.' || quote_ident(a.attname)
        FROM pg_depend d
        JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_namespace tn ON tn.oid = t.relnamespace
        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        LIMIT 1
    )
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE c.relkind = 'S' AND {_USER_NAMESPACES}
  AND {_NOT_EXTENSION_MEMBER.format(catalog="'pg_class'", oid="c.oid")}
ORDER BY 1
"""


@dataclass(frozen=True, slots=True)
class TableFingerprint:
    """Row count and content checksum of one table, maybe up to a key bound."""

    name: str
    rows: int
    checksum: str
    key_column: str | None = None
    max_key: int | None = None
    bound: int | None = None


@dataclass(frozen=True, slots=True)
class SequenceFingerprint:
    """The position of one sequence: the last value it handed out."""

    name: str
    position: int
    owned_by: str | None = None
    owned_max: int | None = None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """Extensions, owners, privileges, tables and sequences of one database."""

    database: str
    extensions: dict[str, str] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    privileges: dict[str, str] = field(default_factory=dict)
    tables: dict[str, TableFingerprint] = field(default_factory=dict)
    sequences: dict[str, SequenceFingerprint] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(table.rows for table in self.tables.values())


def take(
    conn: Any, database: str, bounds: Mapping[str, int | None] | None = None
) -> Fingerprint:
    """Fingerprint the database behind psycopg connection ``conn``.

    ``bounds`` maps table names to the largest key to include, for tables
    with an integer primary key; other tables are read in full.
    """
    from psycopg import sql

    for statement in SESSION_SETTINGS:
        conn.execute(statement)
    extensions = {
        str(name): str(version)
        for name, version in conn.execute(
            "SELECT extname, extversion FROM pg_extension WHERE extname <> 'plpgsql'"
        )
    }
    owners = {str(obj): str(owner) for obj, owner in conn.execute(_OWNERS_SQL)}
    privileges = {str(obj): str(acl) for obj, acl in conn.execute(_PRIVILEGES_SQL)}

    tables: dict[str, TableFingerprint] = {}
    for name, key in conn.execute(_TABLES_SQL).fetchall():
        bound = (bounds or {}).get(name) if key else None
        tables[name] = _table(conn, sql, str(name), key, bound)

    sequences: dict[str, SequenceFingerprint] = {}
    for name, increment, owned_by in conn.execute(_SEQUENCES_SQL).fetchall():
        sequences[name] = _sequence(conn, sql, str(name), int(increment), owned_by)

    conn.rollback()
    return Fingerprint(database, extensions, owners, privileges, tables, sequences)


def _table(
    conn: Any, sql: Any, name: str, key: str | None, bound: int | None
) -> TableFingerprint:
    # Names come from quote_ident above, so they are already safe SQL.
    relation = sql.SQL(name)
    where = sql.SQL("")
    if key and bound is not None:
        where = sql.SQL("WHERE {} <= {}").format(sql.SQL(key), sql.Literal(bound))
    max_key = sql.SQL("max({})").format(sql.SQL(key)) if key else sql.SQL("NULL")
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))"
        "::bit(64)::bigint::numeric), 0)::text, {} FROM {} AS t {}"
    ).format(max_key, relation, where)
    rows, checksum, largest = conn.execute(query).fetchone()
    return TableFingerprint(
        name=name,
        rows=int(rows),
        checksum=str(checksum),
        key_column=key,
        max_key=None if largest is None else int(largest),
        bound=bound,
    )


def _sequence(
    conn: Any, sql: Any, name: str, increment: int, owned_by: str | None
) -> SequenceFingerprint:
    last, called = conn.execute(
        sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(name))
    ).fetchone()
    position = int(last) if called else int(last) - increment

    owned_max = None
    if owned_by:
        table, _, column = owned_by.rpartition(".")
        row = conn.execute(
            sql.SQL("SELECT max({}) FROM {}").format(sql.SQL(column), sql.SQL(table))
        ).fetchone()
        owned_max = None if row[0] is None else int(row[0])
    return SequenceFingerprint(name, position, owned_by, owned_max)
