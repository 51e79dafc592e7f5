"""Lint raw SQL for statements that block the application or break the running version.

The rules follow squawk and strong_migrations: a statement is dangerous when it holds a lock that
blocks reads or writes for longer than a catalog change (a table rewrite or a full scan under
ACCESS EXCLUSIVE), or when it changes the shape the running version uses. Each finding names its rule
and the safe alternative. The linter works on statement shapes found by the tokenizer, not a full
parser: it never looks inside strings or comments, and it errs towards flagging.

``context`` says where the SQL runs: ``file`` (a migration script from Alembic ``upgrade --sql`` or Django
``sqlmigrate``: every rule applies), ``start`` (the ``up`` of a ``sql`` operation: the old version still
runs, so drops and renames are errors; the engine sets lock_timeout itself) or ``complete`` (the old
version is gone: drops are fine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gapless.migrations.sqltext import (
    Kind,
    SqlTextError,
    Statement,
    Token,
    function_calls,
    has_phrase,
    index_table,
    qualified_name,
    skip_phrase,
    split_statements,
    split_top_level,
)

__all__ = ["RULES", "Context", "Finding", "Severity", "lint_sql"]

Severity = Literal["error", "warning"]
Context = Literal["file", "start", "complete"]

RULES: dict[str, str] = {
    "index-not-concurrent": "CREATE INDEX without CONCURRENTLY blocks writes for the whole build",
    "drop-index-not-concurrent": "DROP INDEX without CONCURRENTLY waits for and blocks every query on the table",
    "reindex-not-concurrent": "REINDEX without CONCURRENTLY blocks writes for the whole rebuild",
    "concurrently-in-transaction": "CONCURRENTLY cannot run inside a transaction block",
    "add-column-volatile-default": "ADD COLUMN with a volatile default rewrites the table under ACCESS EXCLUSIVE",
    "add-column-generated-stored": "ADD COLUMN ... GENERATED ALWAYS AS ... STORED rewrites the table",
    "add-column-not-null-without-default": (
        "ADD COLUMN ... NOT NULL without a default (or with one dropped in the same script) fails on a table "
        "with rows or breaks the running version's inserts"
    ),
    "column-type-change": "ALTER COLUMN ... TYPE rewrites the table (and its indexes) under ACCESS EXCLUSIVE",
    "set-not-null": "SET NOT NULL scans the table under ACCESS EXCLUSIVE unless a validated check proves it",
    "foreign-key-not-valid": "a foreign key added without NOT VALID scans both tables under SHARE ROW EXCLUSIVE",
    "check-not-valid": "a check constraint added without NOT VALID scans the table under ACCESS EXCLUSIVE",
    "unique-without-index": "ADD UNIQUE / PRIMARY KEY / EXCLUDE builds its index under ACCESS EXCLUSIVE",
    "table-rewrite": "VACUUM FULL, CLUSTER, SET TABLESPACE and SET LOGGED/UNLOGGED rewrite the table",
    "drop-outside-complete": "dropping a column or table breaks the version that still reads it",
    "rename-breaks-running-version": "renaming a column or table breaks the version that uses the old name",
    "missing-lock-timeout": "DDL without lock_timeout can queue behind a long transaction and block every query",
    "ddl-and-dml-in-transaction": "data changes in the transaction of a DDL hold its lock for their whole duration",
}


_VOLATILE = frozenset(
    {
        "random",
        "gen_random_uuid",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "clock_timestamp",
        "timeofday",
        "nextval",
        "setseed",
        "txid_current",
        "pg_current_xact_id",
    }
)
_NOT_VOLATILE = frozenset(
    {
        "now",
        "transaction_timestamp",
        "statement_timestamp",
        "lower",
        "upper",
        "coalesce",
        "nullif",
        "greatest",
        "least",
        "concat",
        "length",
        "trim",
        "abs",
        "round",
        "md5",
        "to_char",
        "to_jsonb",
        "to_json",
        "date_trunc",
        "make_date",
        "make_interval",
        "jsonb_build_object",
        "json_build_object",
        "jsonb_build_array",
        "array",
        "row",
        "cast",
        "timezone",
        "current_setting",
        "interval",
    }
)
_SERIAL_TYPES = frozenset({"SERIAL", "BIGSERIAL", "SMALLSERIAL", "SERIAL2", "SERIAL4", "SERIAL8"})
_COLUMN_CONSTRAINT_WORDS = frozenset(
    {
        "NOT",
        "NULL",
        "CONSTRAINT",
        "CHECK",
        "REFERENCES",
        "UNIQUE",
        "PRIMARY",
        "GENERATED",
        "COLLATE",
        "DEFAULT",
    }
)
_DDL = frozenset({"ALTER", "CREATE", "DROP", "REINDEX", "CLUSTER", "VACUUM", "TRUNCATE", "LOCK"})
_DML = frozenset({"INSERT", "UPDATE", "DELETE", "COPY", "MERGE"})
_VERSION_TABLES = frozenset({"alembic_version", "django_migrations"})
"""One-row bookkeeping of migration tools: written in the transaction of every DDL they run, harmless."""


@dataclass(frozen=True)
class Finding:
    """One dangerous statement: the rule it breaks, why, and the safe way to do it."""

    rule: str
    severity: Severity
    message: str
    fix: str
    statement: int
    line: int
    snippet: str

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "statement": self.statement,
            "line": self.line,
            "snippet": self.snippet,
        }


@dataclass
class _State:
    context: Context
    created: set[str] = field(default_factory=set)
    not_null_checks: dict[tuple[str, str], str] = field(default_factory=dict)
    """(table, constraint) -> column it proves NOT NULL"""
    not_null_added: set[tuple[str, str]] = field(default_factory=set)
    """(table, column) added NOT NULL with a default by this script (Django drops the default next)"""
    validated: set[tuple[str, str]] = field(default_factory=set)
    lock_timeout_set: bool = False
    in_transaction: bool = False
    tx_ddl: bool = False
    tx_dml: bool = False
    tx_flagged: bool = False
    findings: list[Finding] = field(default_factory=list)


def lint_sql(text: str, *, context: Context = "file") -> list[Finding]:
    """Findings for a SQL script, in statement order."""
    try:
        statements = split_statements(text)
    except SqlTextError as e:
        return [Finding("syntax", "error", f"cannot read the SQL: {e}", "fix the quoting", 0, 0, "")]
    st = _State(context)
    whole_is_transaction = context in ("start", "complete")
    st.in_transaction = whole_is_transaction
    for s in statements:
        _lint_statement(st, s)
    return st.findings


def _add(st: _State, s: Statement, rule: str, severity: Severity, message: str, fix: str) -> None:
    snippet = " ".join(s.text.split())
    st.findings.append(
        Finding(
            rule,
            severity,
            message,
            fix,
            s.index,
            s.line,
            snippet[:200] + ("..." if len(snippet) > 200 else ""),
        )
    )


def _lint_statement(st: _State, s: Statement) -> None:
    words = s.words
    if not words:
        return
    head = words[0]
    if head in ("BEGIN", "START") and (head == "BEGIN" or has_phrase(words, "TRANSACTION")):
        st.in_transaction, st.tx_ddl, st.tx_dml, st.tx_flagged = True, False, False, False
        return
    if head in ("COMMIT", "END", "ROLLBACK", "ABORT"):
        st.in_transaction = st.context in ("start", "complete")
        st.tx_ddl = st.tx_dml = st.tx_flagged = False
        return
    if head == "SET" and "LOCK_TIMEOUT" in words[:3]:
        st.lock_timeout_set = True
        return
    takes_lock = head in _DDL and not (head == "CREATE" and _create_table_name(s) is not None)
    if takes_lock and st.context == "file" and not st.lock_timeout_set:
        st.lock_timeout_set = True  # report once per script
        _add(
            st,
            s,
            "missing-lock-timeout",
            "warning",
            "this DDL runs without lock_timeout: while it waits for a lock, every query on the table waits behind it",
            "start the script with SET lock_timeout = '2s' and retry on failure "
            "(gapless migrate start does both for every step)",
        )
    if head in _DDL:
        st.tx_ddl = True
    if head in _DML and _dml_table(s) not in _VERSION_TABLES:
        st.tx_dml = True
    if st.in_transaction and st.tx_ddl and st.tx_dml and not st.tx_flagged:
        st.tx_flagged = True
        _add(
            st,
            s,
            "ddl-and-dml-in-transaction",
            "warning",
            "this transaction changes both the schema and data: the DDL's lock is held until the data "
            "changes commit",
            "commit the schema change first, then change data in short batches "
            "(add_column's up and alter_column run a checkpointed backfill)",
        )
    if head == "CREATE":
        _lint_create(st, s)
    elif head == "ALTER" and len(words) > 1 and words[1] == "TABLE":
        _lint_alter_table(st, s)
    elif head == "DROP":
        _lint_drop(st, s)
    elif head == "REINDEX" and "CONCURRENTLY" not in words:
        _add(
            st,
            s,
            "reindex-not-concurrent",
            "error",
            "REINDEX without CONCURRENTLY blocks writes to the table while it rebuilds",
            "REINDEX ... CONCURRENTLY (PostgreSQL 12+), outside a transaction block",
        )
    elif (head == "VACUUM" and "FULL" in words[:3]) or head == "CLUSTER":
        _add(
            st,
            s,
            "table-rewrite",
            "error",
            f"{head} {'FULL ' if head == 'VACUUM' else ''}rewrites the table under ACCESS EXCLUSIVE",
            "use pg_repack or pg_squeeze, which rewrite online",
        )


def _dml_table(s: Statement) -> str:
    """The table an INSERT, UPDATE, DELETE, COPY or MERGE writes ("" when not found)."""
    words = s.words
    i = skip_phrase(words, 1, "INTO") if words[0] in ("INSERT", "MERGE") else 1
    i = skip_phrase(words, i, "FROM") if words[0] == "DELETE" else i
    i = skip_phrase(words, i, "ONLY")
    name, _ = qualified_name(s.tokens, i)
    return name


def _create_table_name(s: Statement) -> str | None:
    words = s.words
    i = 1
    for w in ("TEMPORARY", "TEMP", "UNLOGGED"):
        i = skip_phrase(words, i, w)
    if i < len(words) and words[i] == "TABLE":
        i = skip_phrase(words, i + 1, "IF", "NOT", "EXISTS")
        name, _ = qualified_name(s.tokens, i)
        return name
    return None


def _lint_create(st: _State, s: Statement) -> None:
    words = s.words
    table = _create_table_name(s)
    if table is not None:
        st.created.add(table)
        return
    i = skip_phrase(words, 1, "UNIQUE")
    if i >= len(words) or words[i] != "INDEX":
        return
    concurrent = i + 1 < len(words) and words[i + 1] == "CONCURRENTLY"
    target = index_table(s)
    if concurrent:
        if st.in_transaction:
            _add(
                st,
                s,
                "concurrently-in-transaction",
                "error",
                "CREATE INDEX CONCURRENTLY cannot run inside a transaction block"
                + (" (a sql operation's up runs in one)" if st.context != "file" else ""),
                "use a create_index operation, or run the statement outside BEGIN ... COMMIT",
            )
        return
    if target in st.created:
        return
    _add(
        st,
        s,
        "index-not-concurrent",
        "error",
        f"CREATE INDEX without CONCURRENTLY blocks writes to {target or 'the table'} until the index is built",
        "CREATE INDEX CONCURRENTLY (outside a transaction), or a create_index operation, which also "
        "drops and retries an invalid index left by a failed build",
    )


def _lint_drop(st: _State, s: Statement) -> None:
    words = s.words
    if len(words) < 2:
        return
    if words[1] == "INDEX":
        if "CONCURRENTLY" not in words[:3]:
            _add(
                st,
                s,
                "drop-index-not-concurrent",
                "warning",
                "DROP INDEX takes ACCESS EXCLUSIVE on the table: it waits for and then blocks every query",
                "DROP INDEX CONCURRENTLY, or a drop_index operation",
            )
        elif st.in_transaction:
            _add(
                st,
                s,
                "concurrently-in-transaction",
                "error",
                "DROP INDEX CONCURRENTLY cannot run inside a transaction block",
                "use a drop_index operation, or run the statement outside BEGIN ... COMMIT",
            )
    elif words[1] == "TABLE":
        i = skip_phrase(words, 2, "IF", "EXISTS")
        name, _ = qualified_name(s.tokens, i)
        if name not in st.created:
            _drop_finding(st, s, f"table {name}")


def _drop_finding(st: _State, s: Statement, what: str) -> None:
    if st.context == "complete":
        return
    severity: Severity = "error" if st.context == "start" else "warning"
    _add(
        st,
        s,
        "drop-outside-complete",
        severity,
        f"dropping {what} breaks the application version that still reads it",
        "use drop_column / drop_table (hidden from the new version at start, dropped at complete), or "
        "run the drop in a sql operation with phase: complete, after the old version is gone",
    )


def _lint_alter_table(st: _State, s: Statement) -> None:
    words = s.words
    i = skip_phrase(words, 2, "IF", "EXISTS")
    i = skip_phrase(words, i, "ONLY")
    table, i = qualified_name(s.tokens, i)
    created = table in st.created
    for part in split_top_level(s.tokens[i:]):
        _lint_alter_action(st, s, table, created, part)


def _lint_alter_action(st: _State, s: Statement, table: str, created: bool, part: list[Token]) -> None:
    w = [t.upper for t in part]
    if not w:
        return
    if w[0] == "ADD":
        j = skip_phrase(w, 1, "COLUMN")
        j = skip_phrase(w, j, "IF", "NOT", "EXISTS")
        if j < len(w) and w[j] in ("CONSTRAINT", "CHECK", "FOREIGN", "UNIQUE", "PRIMARY", "EXCLUDE"):
            _lint_add_constraint(st, s, table, created, part)
        elif not created:
            _lint_add_column(st, s, table, part[j:])
    elif w[0] == "ALTER":
        j = skip_phrase(w, 1, "COLUMN")
        column = part[j].name if j < len(part) else ""
        rest = w[j + 1 :]
        if not created and (rest[:1] == ["TYPE"] or rest[:3] == ["SET", "DATA", "TYPE"]):
            new_type = rest[1:] if rest[:1] == ["TYPE"] else rest[3:]
            soft = new_type[:1] in (["TEXT"], ["VARCHAR"]) and "(" not in new_type[:2]
            _add(
                st,
                s,
                "column-type-change",
                "warning" if soft else "error",
                f"changing the type of {table}.{column} rewrites the table and its indexes under ACCESS "
                "EXCLUSIVE"
                + (" unless the change is binary-coercible (e.g. varchar(n) to text)" if soft else ""),
                "use an alter_column operation: a new column kept in step by triggers, a batched "
                "backfill, and a swap at complete",
            )
        elif (
            rest[:2] == ["DROP", "DEFAULT"]
            and (table, column) in st.not_null_added
            and st.context != "complete"
        ):
            _add(
                st,
                s,
                "add-column-not-null-without-default",
                "error" if st.context == "start" else "warning",
                f"dropping the default of the new NOT NULL column {table}.{column} makes every INSERT of the "
                "running version, which does not name the column, fail",
                "keep the default until the old version is gone (Django: db_default instead of default), or "
                "add the column nullable; or add_column with nullable: false and an up expression",
            )
        elif not created and rest[:3] == ["SET", "NOT", "NULL"]:
            proven = any(
                tbl == table and col == column and (tbl, name) in st.validated
                for (tbl, name), col in st.not_null_checks.items()
            )
            if not proven:
                _add(
                    st,
                    s,
                    "set-not-null",
                    "error",
                    f"SET NOT NULL on {table}.{column} scans the whole table under ACCESS EXCLUSIVE",
                    f"first ADD CONSTRAINT ... CHECK ({column} IS NOT NULL) NOT VALID, then VALIDATE "
                    "CONSTRAINT (no write lock), then SET NOT NULL (PostgreSQL 12+ skips the scan) and drop "
                    "the check; or alter_column with nullable: false",
                )
    elif w[0] == "DROP":
        j = skip_phrase(w, 1, "COLUMN")
        if j == 1 and w[1:2] == ["CONSTRAINT"]:
            return
        j = skip_phrase(w, j, "IF", "EXISTS")
        if not created and j < len(part):
            _drop_finding(st, s, f"column {table}.{part[j].name}")
    elif w[0] == "VALIDATE" and w[1:2] == ["CONSTRAINT"] and len(part) > 2:
        st.validated.add((table, part[2].name))
    elif w[0] == "RENAME" and not created and w[1:2] != ["CONSTRAINT"]:
        what = "table" if w[1:2] == ["TO"] else "column"
        severity: Severity = "error" if st.context == "start" else "warning"
        if st.context != "complete":
            _add(
                st,
                s,
                "rename-breaks-running-version",
                severity,
                f"renaming a {what} of {table} breaks the application version that uses the old name",
                f"use rename_{what}: the new version sees the new name through its schema's views, the "
                f"{what} is renamed at complete",
            )
    elif (
        w[:2] == ["SET", "TABLESPACE"] or w[:2] in (["SET", "LOGGED"], ["SET", "UNLOGGED"])
    ) and not created:
        _add(
            st,
            s,
            "table-rewrite",
            "error",
            f"{' '.join(w[:2])} rewrites {table} under ACCESS EXCLUSIVE",
            "avoid it on a live table, or use an online tool such as pg_repack",
        )


def _lint_add_constraint(st: _State, s: Statement, table: str, created: bool, part: list[Token]) -> None:
    w = [t.upper for t in part]
    name = ""
    if "CONSTRAINT" in w:
        k = w.index("CONSTRAINT") + 1
        name = part[k].name if k < len(part) else ""
    not_valid = has_phrase(w, "NOT", "VALID")
    if "CHECK" in w:
        # remember CHECK (col IS NOT NULL), which can prove a later SET NOT NULL
        k = w.index("CHECK")
        inner = [t for t in part[k + 1 :] if not (t.kind is Kind.punct and t.text in "()")]
        iw = [t.upper for t in inner]
        if (
            len(inner) >= 4
            and iw[1:4] == ["IS", "NOT", "NULL"]
            and (len(iw) == 4 or iw[4:] == ["NOT", "VALID"])
        ):
            st.not_null_checks[(table, name)] = inner[0].name
        if not not_valid and not created:
            _add(
                st,
                s,
                "check-not-valid",
                "error",
                f"adding check {name or ''} validates every row of {table} under ACCESS EXCLUSIVE".replace(
                    "  ", " "
                ),
                "add it with NOT VALID (new writes are checked at once), then VALIDATE CONSTRAINT in a separate "
                "statement, which does not block writes; or an add_constraint operation",
            )
    elif "FOREIGN" in w:
        if not not_valid and not created:
            _add(
                st,
                s,
                "foreign-key-not-valid",
                "error",
                f"adding foreign key {name or ''} checks every row of {table} while blocking writes to it and "
                "to the referenced table".replace("  ", " "),
                "add it with NOT VALID, then VALIDATE CONSTRAINT in a separate statement; or an "
                "add_constraint operation",
            )
    elif "EXCLUDE" in w and not created:
        _add(
            st,
            s,
            "unique-without-index",
            "error",
            f"ADD EXCLUDE on {table} builds its index under ACCESS EXCLUSIVE, blocking reads and writes",
            "there is no online way to add an exclusion constraint (it cannot use an existing index): add it "
            "when the table is created, or while the table takes no traffic",
        )
    elif ("UNIQUE" in w or "PRIMARY" in w) and not has_phrase(w, "USING", "INDEX") and not created:
        kind = "UNIQUE" if "UNIQUE" in w else "PRIMARY KEY"
        _add(
            st,
            s,
            "unique-without-index",
            "error",
            f"ADD {kind} on {table} builds its index under ACCESS EXCLUSIVE",
            f"CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... {kind} USING INDEX; or an "
            "add_constraint operation with unique",
        )


def _lint_add_column(st: _State, s: Statement, table: str, definition: list[Token]) -> None:
    if len(definition) < 2:
        return
    w = [t.upper for t in definition]
    column = definition[0].name
    typ = w[1]
    if typ in _SERIAL_TYPES:
        _add(
            st,
            s,
            "add-column-volatile-default",
            "error",
            f"adding {table}.{column} as {typ.lower()} fills every row from a sequence: a table rewrite under "
            "ACCESS EXCLUSIVE",
            "add an integer column without a default, attach a sequence default, and backfill in batches",
        )
        return
    if has_phrase(w, "GENERATED") and "STORED" in w:
        _add(
            st,
            s,
            "add-column-generated-stored",
            "error",
            f"a stored generated column {table}.{column} is computed for every row in a table rewrite",
            "add a plain column filled by add_column's up (trigger + batched backfill)",
        )
    has_default = "DEFAULT" in w
    if has_default:
        k = w.index("DEFAULT") + 1
        expr: list[Token] = []
        depth = 0
        for t in definition[k:]:
            if t.kind is Kind.punct and t.text == "(":
                depth += 1
            elif t.kind is Kind.punct and t.text == ")":
                depth -= 1
            if depth == 0 and t.upper in _COLUMN_CONSTRAINT_WORDS and expr:
                break
            expr.append(t)
        calls = function_calls(expr)
        volatile = [c for c in calls if c in _VOLATILE]
        unknown = [c for c in calls if c not in _VOLATILE and c not in _NOT_VOLATILE]
        if volatile or unknown:
            _add(
                st,
                s,
                "add-column-volatile-default",
                "error" if volatile else "warning",
                f"the default of {table}.{column} calls {', '.join(volatile or unknown)}, which "
                + ("is volatile" if volatile else "may be volatile")
                + ": every row is written in a table rewrite under ACCESS EXCLUSIVE",
                "add the column without a default, SET DEFAULT in a separate statement, and backfill in "
                "batches (an add_column operation with a default expression does exactly that)",
            )
    if has_phrase(w, "NOT", "NULL") and has_default:
        st.not_null_added.add((table, column))
    if has_phrase(w, "NOT", "NULL") and not has_default:
        _add(
            st,
            s,
            "add-column-not-null-without-default",
            "error",
            f"adding {table}.{column} NOT NULL without a default fails as soon as the table has a row",
            "add it nullable, backfill, then prove NOT NULL with a validated check; or add_column with "
            "nullable: false and an up expression",
        )
    if "REFERENCES" in w and not has_phrase(w, "NOT", "VALID"):
        _add(
            st,
            s,
            "foreign-key-not-valid",
            "warning",
            f"the foreign key on the new column {table}.{column} is validated at once under SHARE ROW "
            "EXCLUSIVE on both tables",
            "add the column, then the foreign key NOT VALID, then VALIDATE CONSTRAINT",
        )
