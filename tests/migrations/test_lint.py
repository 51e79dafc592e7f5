"""The linter: a table of dangerous and safe statements, each flagged or passed as expected."""

from __future__ import annotations

import pytest

from gapless.migrations.lint import RULES, lint_sql
from gapless.migrations.sqlsummary import summarize_sql
from gapless.migrations.sqltext import SqlTextError, split_statements, tokenize
from tests.migrations.lint_corpus import STATEMENTS

PREAMBLE = "SET lock_timeout = '2s';\n"

# (statement, expected rules): the single statements of the corpus that is also compared with squawk
CASES = [(case.sql, list(case.gapless)) for case in STATEMENTS]


@pytest.mark.parametrize(("statement", "rules"), CASES, ids=[case.name for case in STATEMENTS])
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


def test_migration_tool_bookkeeping_is_not_a_data_change() -> None:
    """Alembic writes alembic_version in the transaction of its DDL: one row, not a data migration."""
    script = """SET lock_timeout = '2s';
BEGIN;
ALTER TABLE users ADD COLUMN note text;
INSERT INTO alembic_version (version_num) VALUES ('a1') RETURNING alembic_version.version_num;
UPDATE public.alembic_version SET version_num='b2' WHERE alembic_version.version_num = 'a1';
COMMIT;"""
    assert lint_sql(script) == []
    findings = lint_sql(script.replace("COMMIT;", "DELETE FROM ONLY users WHERE note IS NULL;\nCOMMIT;"))
    assert [(f.rule, f.statement) for f in findings] == [("ddl-and-dml-in-transaction", 6)]


def test_default_dropped_after_adding_a_not_null_column() -> None:
    """Django adds a NOT NULL field with its default, then drops the default: the old version's inserts fail."""
    script = (
        PREAMBLE
        + 'BEGIN;\nALTER TABLE "shop_customer" ADD COLUMN "email" varchar(254) DEFAULT \'\' NOT NULL;\n'
        'ALTER TABLE "shop_customer" ALTER COLUMN "email" DROP DEFAULT;\nCOMMIT;'
    )
    findings = lint_sql(script)
    assert [(f.rule, f.severity, f.statement) for f in findings] == [
        ("add-column-not-null-without-default", "warning", 4)
    ]
    assert "shop_customer.email" in findings[0].message
    # like a drop: an error while the old version surely runs (a sql operation's up), fine once it is gone
    up = script.replace("BEGIN;\n", "").replace("\nCOMMIT;", "")
    assert [(f.rule, f.severity) for f in lint_sql(up, context="start")] == [
        ("add-column-not-null-without-default", "error")
    ]
    assert lint_sql(script, context="complete") == []
    # a default dropped from a nullable new column, or from a column this script did not add, is left alone
    assert lint_sql(script.replace(" NOT NULL;", ";")) == []
    assert lint_sql(PREAMBLE + "ALTER TABLE users ALTER COLUMN email DROP DEFAULT;") == []
    created = PREAMBLE + "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN c int DEFAULT 0 NOT NULL;\n"
    assert lint_sql(created + "ALTER TABLE t ALTER COLUMN c DROP DEFAULT;") == []


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
