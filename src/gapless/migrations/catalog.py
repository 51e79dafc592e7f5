"""Read what the planner and the engine need from PostgreSQL's catalog.

Every query reads ``pg_catalog`` only (no ``information_schema``: it hides objects the user cannot
access and is slow on large schemas) and takes no lock stronger than ACCESS SHARE on catalog tables.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import psycopg
from psycopg.rows import TupleRow

from gapless.migrations.gate import Client, is_internal, parse_application_name
from gapless.migrations.info import ColumnInfo, IndexInfo, SchemaInfo, TableInfo

__all__ = [
    "KeyColumn",
    "database_clients",
    "gapless_clients",
    "index_state",
    "primary_key",
    "read_schema",
    "relation_exists",
    "schema_exists",
    "schema_usage",
    "table_columns",
    "table_grants",
    "unidentified_clients",
    "views_in_schema",
]

Conn = psycopg.Connection[TupleRow]


@dataclass(frozen=True)
class KeyColumn:
    name: str
    type: str


def read_schema(conn: Conn, schema: str) -> SchemaInfo:
    """Tables, columns, keys, indexes and constraint names of ``schema``."""
    estimates: dict[str, int] = {}
    for name, tuples in conn.execute(
        "SELECT c.relname, c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
        (schema,),
    ).fetchall():
        estimates[str(name)] = int(tuples)
    columns: dict[str, list[ColumnInfo]] = defaultdict(list)
    for table, col, typ, not_null, default, identity, generated in conn.execute(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '', a.attgenerated <> '' "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY c.relname, a.attnum",
        (schema,),
    ).fetchall():
        columns[str(table)].append(
            ColumnInfo(
                name=str(col),
                type=str(typ),
                not_null=bool(not_null),
                default=None if default is None else str(default),
                identity=bool(identity),
                generated=bool(generated),
            )
        )
    keys: dict[str, tuple[str, ...]] = {
        str(table): tuple(str(c) for c in cols)
        for table, cols in conn.execute(
            "SELECT c.relname, array_agg(a.attname ORDER BY k.ord) "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
            "WHERE n.nspname = %s AND i.indisprimary GROUP BY c.relname",
            (schema,),
        ).fetchall()
    }
    constrained: dict[str, set[str]] = defaultdict(set)
    for table, col in conn.execute(
        "SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey::int2[]) "
        "WHERE n.nspname = %(s)s "
        "UNION SELECT c.relname, a.attname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (k.conkey) "
        # PostgreSQL 18 records NOT NULL as constraints too ('n'); nullability is the column's own
        "WHERE n.nspname = %(s)s AND k.contype <> 'n' "
        "UNION SELECT c.relname, a.attname FROM pg_constraint k JOIN pg_class c ON c.oid = k.confrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (k.confkey) "
        "WHERE n.nspname = %(s)s AND k.contype = 'f'",
        {"s": schema},
    ).fetchall():
        constrained[str(table)].add(str(col))
    indexes = {
        str(name): IndexInfo(str(name), str(table), bool(valid), None if con is None else str(con))
        for name, table, valid, con in conn.execute(
            "SELECT ic.relname, c.relname, i.indisvalid, k.conname FROM pg_index i "
            "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x') "
            "WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    }
    constraints = frozenset(
        (str(t), str(c))
        for t, c in conn.execute(
            "SELECT c.relname, k.conname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    )
    relations = frozenset(
        str(r)
        for (r,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    )
    tables = {
        name: TableInfo(
            name=name,
            columns=tuple(columns.get(name, ())),
            primary_key=keys.get(name, ()),
            constrained=frozenset(constrained.get(name, ())),
            estimated_rows=max(estimate, 0),
        )
        for name, estimate in estimates.items()
    }
    return SchemaInfo(
        schema=schema, tables=tables, indexes=indexes, constraints=constraints, relations=relations
    )


def table_columns(conn: Conn, schema: str, table: str) -> list[tuple[str, str]]:
    """(column, type) of a table in column order; empty if the table does not exist."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, table),
    ).fetchall()
    return [(str(name), str(typ)) for name, typ in rows]


def primary_key(conn: Conn, schema: str, table: str) -> list[KeyColumn]:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
        "WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary ORDER BY k.ord",
        (schema, table),
    ).fetchall()
    return [KeyColumn(str(name), str(typ)) for name, typ in rows]


def relation_exists(conn: Conn, schema: str, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return row is not None


def schema_exists(conn: Conn, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def index_state(conn: Conn, schema: str, name: str) -> bool | None:
    """None if the index does not exist, else whether it is valid (a failed CONCURRENTLY build is not)."""
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return None if row is None else bool(row[0])


def views_in_schema(conn: Conn, schema: str) -> tuple[list[str], list[str]]:
    """(views, other relations) of a schema: gapless creates only views in a version schema."""
    views: list[str] = []
    others: list[str] = []
    for name, kind in conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s ORDER BY c.relname",
        (schema,),
    ).fetchall():
        (views if kind == "v" else others).append(str(name))
    return views, others


_CLIENTS = (
    "SELECT pid, application_name, host(client_addr), state, backend_start::text FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


def database_clients(conn: Conn) -> list[Client]:
    """Every other client connection of this database but gapless's own, identified or not."""
    clients: list[Client] = []
    for pid, app_name, addr, state, started in conn.execute(_CLIENTS).fetchall():
        name = str(app_name or "")
        if is_internal(name):
            continue
        parsed = parse_application_name(name)
        app, version, instance = parsed if parsed is not None else (name, "", "")
        clients.append(
            Client(
                app,
                version,
                instance,
                pid=int(pid),
                address=None if addr is None else str(addr),
                state=None if state is None else str(state),
                backend_start=None if started is None else str(started),
                identified=parsed is not None,
            )
        )
    return clients


def gapless_clients(conn: Conn) -> list[Client]:
    """Connections of this database that identify themselves as gapless application instances."""
    return [c for c in database_clients(conn) if c.identified]


def unidentified_clients(conn: Conn) -> list[tuple[int, str]]:
    """(pid, application_name) of client connections that do not say which schema version they use."""
    return [(c.pid, c.app) for c in database_clients(conn) if not c.identified]


_VIEW_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


def table_grants(conn: Conn, schema: str) -> dict[str, list[tuple[str | None, str]]]:
    """table -> (role, privilege) granted to roles other than the owner; role None means PUBLIC."""
    grants: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
    for table, role, privilege in conn.execute(
        "SELECT c.relname, CASE WHEN a.grantee = 0 THEN NULL ELSE r.rolname END, a.privilege_type "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "CROSS JOIN LATERAL aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND a.grantee <> c.relowner "
        "AND a.privilege_type = ANY(%s) ORDER BY 1, 2, 3",
        (schema, list(_VIEW_PRIVILEGES)),
    ).fetchall():
        grants[str(table)].append((None if role is None else str(role), str(privilege)))
    return dict(grants)


def schema_usage(conn: Conn, schema: str) -> list[str | None]:
    """Roles (None: PUBLIC) that may use ``schema``, besides its owner."""
    return [
        None if role is None else str(role)
        for (role,) in conn.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE r.rolname END FROM pg_namespace n "
            "CROSS JOIN LATERAL aclexplode(n.nspacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE n.nspname = %s AND a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner ORDER BY 1",
            (schema,),
        ).fetchall()
    ]
