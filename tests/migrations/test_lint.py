"""The linter: a table of dangerous and safe statements, each flagged or passed as expected."""

from __future__ import annotations

import pytest

from gapless.migrations.lint import RULES, lint_sql
from gapless.migrations.sqlsummary import summarize_sql
from gapless.migrations.sqltext import SqlTextError, split_statements, tokenize

PREAMBLE = "SET lock_timeout = '2s';\n"

CASES = [
    # (statement, expected rules)
    ("ALTER TABLE users ADD COLUMN created timestamptz DEFAULT now()", []),
    ("ALTER TABLE users ADD COLUMN n integer DEFAULT 0 NOT NULL", []),
    ("ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid()", ["add-column-volatile-default"]),
    ("ALTER TABLE users ADD COLUMN r float8 DEFAULT random() NOT NULL", ["add-column-volatile-default"]),
    ("ALTER TABLE users ADD COLUMN id2 bigserial", ["add-column-volatile-default"]),
    (
        "ALTER TABLE users ADD COLUMN s text GENERATED ALWAYS AS (lower(name)) STORED",
        ["add-column-generated-stored"],
    ),
    ("ALTER TABLE users ADD COLUMN n integer NOT NULL", ["add-column-not-null-without-default"]),
    ("ALTER TABLE users ALTER COLUMN age TYPE bigint", ["column-type-change"]),
    ("ALTER TABLE users ALTER COLUMN age SET DATA TYPE bigint USING age::bigint", ["column-type-change"]),
    ("ALTER TABLE users ALTER COLUMN email SET NOT NULL", ["set-not-null"]),
    ("ALTER TABLE users ALTER COLUMN email SET DEFAULT ''", []),
    ("CREATE INDEX users_email ON users (email)", ["index-not-concurrent"]),
    ("CREATE UNIQUE INDEX users_email ON public.users USING btree (email)", ["index-not-concurrent"]),
    ("CREATE INDEX CONCURRENTLY users_email ON users (email)", []),
    ("DROP INDEX users_email", ["drop-index-not-concurrent"]),
    ("DROP INDEX CONCURRENTLY users_email", []),
    ("REINDEX TABLE users", ["reindex-not-concurrent"]),
    ("REINDEX TABLE CONCURRENTLY users", []),
    (
        "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id)",
        ["foreign-key-not-valid"],
    ),
    ("ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID", []),
    ("ALTER TABLE orders VALIDATE CONSTRAINT fk", []),
    ("ALTER TABLE users ADD CONSTRAINT c CHECK (age > 0)", ["check-not-valid"]),
    ("ALTER TABLE users ADD CONSTRAINT c CHECK (age > 0) NOT VALID", []),
    ("ALTER TABLE users ADD CONSTRAINT u UNIQUE (email)", ["unique-without-index"]),
    ("ALTER TABLE users ADD CONSTRAINT u UNIQUE USING INDEX users_email", []),
    ("ALTER TABLE users ADD PRIMARY KEY (id)", ["unique-without-index"]),
    ("ALTER TABLE users DROP COLUMN legacy", ["drop-outside-complete"]),
    ("DROP TABLE scratch", ["drop-outside-complete"]),
    ("ALTER TABLE users RENAME COLUMN name TO full_name", ["rename-breaks-running-version"]),
    ("ALTER TABLE users RENAME TO people", ["rename-breaks-running-version"]),
    ("VACUUM FULL users", ["table-rewrite"]),
    ("CLUSTER users USING users_pkey", ["table-rewrite"]),
    ("ALTER TABLE users SET TABLESPACE fast", ["table-rewrite"]),
    ("SELECT 'ALTER TABLE users DROP COLUMN x' -- DROP TABLE y", []),
    ("UPDATE users SET age = 1 WHERE id = 1", []),
]


@pytest.mark.parametrize(("statement", "rules"), CASES)
def test_statement_table(statement: str, rules: list[str]) -> None:
    """Every dangerous statement is flagged with its rule; safe statements pass."""
    findings = lint_sql(PREAMBLE + statement + ";")
    assert [f.rule for f in findings] == rules
    for f in findings:
        assert f.rule in RULES
        assert f.fix
        assert f.statement == 2


def test_tables_created_in_the_same_script_are_exempt() -> None:
    """A table nobody uses yet can be indexed and constrained without ceremony."""
    script = (
        PREAMBLE
        + """
CREATE TABLE notes (id int PRIMARY KEY, user_id int);
CREATE INDEX notes_user ON notes (user_id);
ALTER TABLE notes ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE notes ALTER COLUMN user_id SET NOT NULL;
"""
    )
    assert lint_sql(script) == []


def test_set_not_null_proved_by_a_validated_check_passes() -> None:
    """The safe recipe (check NOT VALID, validate, SET NOT NULL) raises nothing."""
    script = (
        PREAMBLE
        + """
ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;
ALTER TABLE users VALIDATE CONSTRAINT email_nn;
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
"""
    )
    assert lint_sql(script) == []


def test_missing_lock_timeout_is_reported_once_per_script() -> None:
    """A script (e.g. from alembic upgrade --sql) whose DDL runs without lock_timeout is flagged once."""
    findings = lint_sql("ALTER TABLE a ADD COLUMN x int;\nALTER TABLE b ADD COLUMN y int;")
    assert [(f.rule, f.line) for f in findings] == [("missing-lock-timeout", 1)]


def test_schema_and_data_changes_in_one_transaction() -> None:
    """A DDL and an UPDATE in the same BEGIN ... COMMIT are flagged (Django migrations do this)."""
    script = (
        PREAMBLE
        + "BEGIN;\nALTER TABLE a ADD COLUMN x int;\nUPDATE a SET x = 1;\nCOMMIT;\nUPDATE a SET x = 2;"
    )
    assert [f.rule for f in lint_sql(script)] == ["ddl-and-dml-in-transaction"]


@pytest.mark.parametrize(
    ("context", "statement", "rules", "severity"),
    [
        ("start", "ALTER TABLE users DROP COLUMN legacy", ["drop-outside-complete"], "error"),
        ("complete", "ALTER TABLE users DROP COLUMN legacy", [], None),
        ("start", "ALTER TABLE users RENAME COLUMN a TO b", ["rename-breaks-running-version"], "error"),
        (
            "file",
            "SET lock_timeout = '1s'; ALTER TABLE users DROP COLUMN legacy",
            ["drop-outside-complete"],
            "warning",
        ),
        ("start", "CREATE INDEX CONCURRENTLY i ON users (a)", ["concurrently-in-transaction"], "error"),
        ("start", "ALTER TABLE users ADD COLUMN x int", [], None),
    ],
)
def test_context_changes_what_is_dangerous(
    context: str, statement: str, rules: list[str], severity: str | None
) -> None:
    """Drops are errors while the old version runs and fine at complete; sql operations run in one transaction."""
    findings = lint_sql(statement, context=context)  # type: ignore[arg-type]
    assert [f.rule for f in findings] == rules
    if severity:
        assert findings[0].severity == severity


def test_summary_of_a_script() -> None:
    """A sql operation's step shows the strongest lock its statements take and the tables they touch."""
    summary = summarize_sql(
        "UPDATE a SET x = 1; ALTER TABLE b VALIDATE CONSTRAINT c; CREATE INDEX CONCURRENTLY i ON c (x)"
    )
    assert summary.lock == "SHARE UPDATE EXCLUSIVE"
    assert summary.tables == ("a", "b", "c")
    assert summarize_sql("ALTER TABLE public.users ALTER COLUMN a TYPE text").rewrites


def test_tokenizer_respects_quotes_comments_and_dollar_strings() -> None:
    """Semicolons inside strings, identifiers, comments and dollar quotes do not split statements."""
    text = "SELECT ';', \"a;b\", $f$ ; $f$, E'\\';' /* ; /* nested ; */ */; -- ;\nSELECT 2"
    assert [s.index for s in split_statements(text)] == [1, 2]
    with pytest.raises(SqlTextError, match="unterminated"):
        tokenize("SELECT 'open")
    assert lint_sql("SELECT 'open")[0].rule == "syntax"
