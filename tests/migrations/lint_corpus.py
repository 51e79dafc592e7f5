"""The SQL corpus that gapless's linter is checked and compared with squawk on.

Each case says whether the input is dangerous (it blocks reads or writes for longer than a catalog
change behind lock_timeout, breaks the application version that is still running, or fails mid-way),
which rules gapless reports, and which rules squawk reports (its style rules aside, see
:data:`SQUAWK_STYLE_RULES`). ``note`` explains the rows where the two tools disagree; the comparison
(``bench/lint_compare.py``, ``tests/migrations/test_lint_squawk.py``) and the statement table of
``tests/migrations/test_lint.py`` read the same cases.

Single statements are linted after :data:`PREAMBLE`, so that neither tool's timeout rule fires; scripts
(Alembic ``upgrade --sql`` output, Django ``sqlmigrate`` output, multi-statement recipes) are linted as
they are. Neither tool is told that a file runs in a transaction: BEGIN / COMMIT are written out where
the migration tool writes them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "CORPUS",
    "PREAMBLE",
    "SCRIPTS",
    "SQUAWK_STYLE_RULES",
    "STATEMENTS",
    "Case",
    "run_squawk",
    "squawk_binary",
    "squawk_version",
    "write_corpus",
]

PREAMBLE = "SET lock_timeout = '2s';\nSET statement_timeout = '5s';\n"

SQUAWK_STYLE_RULES = frozenset(
    {
        "prefer-robust-stmts",  # IF [NOT] EXISTS, so a failed migration can be rerun
        "prefer-bigint-over-int",
        "prefer-bigint-over-smallint",
        "prefer-identity",
        "prefer-text-field",
        "prefer-timestamp-tz",
        "prefer-timestamptz",
        "ban-char-field",
    }
)
"""squawk rules about schema style and rerunnability rather than locks or compatibility; gapless has none
of them, so the comparison leaves them out (the benchmark counts them)."""

Kind = Literal["statement", "alembic", "django", "script"]


@dataclass(frozen=True)
class Case:
    """One input, what it is, and what each linter reports on it."""

    name: str
    sql: str
    dangerous: bool
    gapless: tuple[str, ...]
    """gapless's rule ids, in the order it reports them"""
    squawk: frozenset[str]
    """squawk's rule names, style rules left out"""
    kind: Kind = "statement"
    note: str = ""
    """why the tools disagree (empty where they agree)"""

    @property
    def text(self) -> str:
        """The text both linters read."""
        return PREAMBLE + self.sql + ";\n" if self.kind == "statement" else self.sql


def _s(
    name: str,
    sql: str,
    gapless: tuple[str, ...],
    squawk: set[str],
    *,
    dangerous: bool | None = None,
    note: str = "",
) -> Case:
    return Case(
        name,
        sql,
        bool(gapless) if dangerous is None else dangerous,
        gapless,
        frozenset(squawk),
        "statement",
        note,
    )


_NOTE_SERIAL = (
    "a serial column is filled from a sequence (nextval, volatile): a table rewrite; squawk only suggests "
    "an identity column (prefer-identity, a style rule)"
)
_NOTE_REWRITE = "squawk has no rule for statements that rewrite the table outside ALTER COLUMN TYPE"

STATEMENTS: list[Case] = [
    # ADD COLUMN
    _s("add-column-default-now", "ALTER TABLE users ADD COLUMN created timestamptz DEFAULT now()", (), set()),
    _s("add-column-default-constant", "ALTER TABLE users ADD COLUMN n integer DEFAULT 0 NOT NULL", (), set()),
    _s(
        "add-column-default-uuid",
        "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid()",
        ("add-column-volatile-default",),
        {"adding-field-with-default"},
    ),
    _s(
        "add-column-default-random",
        "ALTER TABLE users ADD COLUMN r float8 DEFAULT random() NOT NULL",
        ("add-column-volatile-default",),
        {"adding-field-with-default"},
    ),
    _s(
        "add-column-bigserial",
        "ALTER TABLE users ADD COLUMN id2 bigserial",
        ("add-column-volatile-default",),
        set(),
        note=_NOTE_SERIAL,
    ),
    _s(
        "add-column-generated-stored",
        "ALTER TABLE users ADD COLUMN s text GENERATED ALWAYS AS (lower(name)) STORED",
        ("add-column-generated-stored",),
        {"adding-field-with-default"},
    ),
    _s(
        "add-column-not-null",
        "ALTER TABLE users ADD COLUMN n integer NOT NULL",
        ("add-column-not-null-without-default",),
        {"adding-required-field"},
    ),
    # ALTER COLUMN
    _s(
        "alter-column-type",
        "ALTER TABLE users ALTER COLUMN age TYPE bigint",
        ("column-type-change",),
        {"changing-column-type"},
    ),
    _s(
        "alter-column-set-data-type",
        "ALTER TABLE users ALTER COLUMN age SET DATA TYPE bigint USING age::bigint",
        ("column-type-change",),
        {"changing-column-type"},
    ),
    _s(
        "set-not-null",
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
        ("set-not-null",),
        {"adding-not-nullable-field"},
    ),
    _s("set-default", "ALTER TABLE users ALTER COLUMN email SET DEFAULT ''", (), set()),
    # indexes
    _s(
        "create-index",
        "CREATE INDEX users_email ON users (email)",
        ("index-not-concurrent",),
        {"require-concurrent-index-creation"},
    ),
    _s(
        "create-unique-index",
        "CREATE UNIQUE INDEX users_email ON public.users USING btree (email)",
        ("index-not-concurrent",),
        {"require-concurrent-index-creation"},
    ),
    _s("create-index-concurrently", "CREATE INDEX CONCURRENTLY users_email ON users (email)", (), set()),
    _s(
        "drop-index",
        "DROP INDEX users_email",
        ("drop-index-not-concurrent",),
        {"require-concurrent-index-deletion"},
    ),
    _s("drop-index-concurrently", "DROP INDEX CONCURRENTLY users_email", (), set()),
    _s("reindex", "REINDEX TABLE users", ("reindex-not-concurrent",), {"require-concurrent-reindex"}),
    _s("reindex-concurrently", "REINDEX TABLE CONCURRENTLY users", (), set()),
    # constraints
    _s(
        "add-foreign-key",
        "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id)",
        ("foreign-key-not-valid",),
        {"adding-foreign-key-constraint", "constraint-missing-not-valid"},
    ),
    _s(
        "add-foreign-key-not-valid",
        "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID",
        (),
        set(),
    ),
    _s("validate-constraint", "ALTER TABLE orders VALIDATE CONSTRAINT fk", (), set()),
    _s(
        "add-check",
        "ALTER TABLE users ADD CONSTRAINT c CHECK (age > 0)",
        ("check-not-valid",),
        {"constraint-missing-not-valid"},
    ),
    _s("add-check-not-valid", "ALTER TABLE users ADD CONSTRAINT c CHECK (age > 0) NOT VALID", (), set()),
    _s(
        "add-unique",
        "ALTER TABLE users ADD CONSTRAINT u UNIQUE (email)",
        ("unique-without-index",),
        {"constraint-missing-not-valid", "disallowed-unique-constraint"},
    ),
    _s(
        "add-unique-using-index",
        "ALTER TABLE users ADD CONSTRAINT u UNIQUE USING INDEX users_email",
        (),
        set(),
    ),
    _s(
        "add-primary-key",
        "ALTER TABLE users ADD PRIMARY KEY (id)",
        ("unique-without-index",),
        {"adding-serial-primary-key-field", "constraint-missing-not-valid"},
    ),
    # drops and renames
    _s(
        "drop-column",
        "ALTER TABLE users DROP COLUMN legacy",
        ("drop-outside-complete",),
        {"ban-drop-column"},
    ),
    _s("drop-table", "DROP TABLE scratch", ("drop-outside-complete",), {"ban-drop-table"}),
    _s(
        "rename-column",
        "ALTER TABLE users RENAME COLUMN name TO full_name",
        ("rename-breaks-running-version",),
        {"renaming-column"},
    ),
    _s(
        "rename-table",
        "ALTER TABLE users RENAME TO people",
        ("rename-breaks-running-version",),
        {"renaming-table"},
    ),
    # rewrites
    _s("vacuum-full", "VACUUM FULL users", ("table-rewrite",), set(), note=_NOTE_REWRITE),
    _s("cluster", "CLUSTER users USING users_pkey", ("table-rewrite",), set(), note=_NOTE_REWRITE),
    _s(
        "set-tablespace",
        "ALTER TABLE users SET TABLESPACE fast",
        ("table-rewrite",),
        set(),
        note=_NOTE_REWRITE,
    ),
    # not DDL
    _s("sql-in-string-and-comment", "SELECT 'ALTER TABLE users DROP COLUMN x' -- DROP TABLE y", (), set()),
    _s("update", "UPDATE users SET age = 1 WHERE id = 1", (), set()),
    # beyond the statement table of test_lint.py: where the two tools differ, and a few more agreements
    _s(
        "add-column-references",
        "ALTER TABLE orders ADD COLUMN org_id bigint REFERENCES orgs (id)",
        ("foreign-key-not-valid",),
        {"adding-foreign-key-constraint"},
    ),
    _s("add-column-default-json", "ALTER TABLE users ADD COLUMN prefs jsonb DEFAULT '{}'", (), set()),
    _s(
        "add-column-default-clock",
        "ALTER TABLE users ADD COLUMN seen timestamptz DEFAULT clock_timestamp()",
        ("add-column-volatile-default",),
        {"adding-field-with-default"},
    ),
    _s(
        "add-column-generated-virtual",
        "ALTER TABLE users ADD COLUMN v bigint GENERATED ALWAYS AS (age * 2) VIRTUAL",
        (),
        {"adding-field-with-default"},
        note="a virtual generated column (PostgreSQL 18) is computed when read: adding it rewrites nothing; "
        "squawk treats every generated column as a default that rewrites",
    ),
    _s(
        "add-exclude",
        "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, span WITH &&)",
        ("unique-without-index",),
        {"constraint-missing-not-valid"},
    ),
    _s(
        "drop-not-null",
        "ALTER TABLE users ALTER COLUMN email DROP NOT NULL",
        (),
        {"ban-drop-not-null"},
        note="a catalog change the running version tolerates (its writes still satisfy the looser column); "
        "squawk bans it as a possible break of clients that read the column",
    ),
    _s(
        "rename-constraint",
        "ALTER TABLE users RENAME CONSTRAINT c TO c2",
        (),
        {"renaming-object"},
        note="queries do not name constraints (ON CONFLICT ON CONSTRAINT aside); squawk flags every rename",
    ),
    _s(
        "detach-partition",
        "ALTER TABLE events DETACH PARTITION events_2020",
        (),
        {"require-concurrent-partition-detach"},
        note="a catalog change under ACCESS EXCLUSIVE on the parent, which lock_timeout bounds like any "
        "ALTER TABLE; squawk asks for DETACH ... CONCURRENTLY (PostgreSQL 14+), which never blocks queries",
    ),
    _s(
        "set-logged",
        "ALTER TABLE users SET LOGGED",
        ("table-rewrite",),
        set(),
        note=_NOTE_REWRITE,
    ),
    _s("vacuum", "VACUUM users", (), set()),
    _s(
        "truncate-cascade",
        "TRUNCATE users CASCADE",
        (),
        {"ban-truncate-cascade"},
        dangerous=True,
        note="deletes every row of users and of the tables that reference it; gapless has no rule for data "
        "deletion (TRUNCATE, DELETE), only for locks and schema shape",
    ),
    _s(
        "refresh-materialized-view",
        "REFRESH MATERIALIZED VIEW order_totals",
        (),
        set(),
        dangerous=True,
        note="blocks reads of the view for the whole refresh (ACCESS EXCLUSIVE); neither tool has a rule "
        "(REFRESH ... CONCURRENTLY, with a unique index, does not block reads)",
    ),
]

# Alembic: `alembic upgrade head --sql` (alembic 1.20, PostgreSQL dialect, transactional DDL) for
# op.add_column / op.create_index / op.create_foreign_key / op.alter_column / op.execute revisions; the
# second one uses autocommit_block() around create_index(..., postgresql_concurrently=True).
_ALEMBIC_UNSAFE = """\
BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> a1b2c3d4e5f6

ALTER TABLE users ADD COLUMN email VARCHAR(255);

CREATE INDEX ix_users_email ON users (email);

ALTER TABLE orders ADD CONSTRAINT fk_orders_user FOREIGN KEY(user_id) REFERENCES users (id);

INSERT INTO alembic_version (version_num) VALUES ('a1b2c3d4e5f6') RETURNING alembic_version.version_num;

-- Running upgrade a1b2c3d4e5f6 -> b2c3d4e5f6a7

ALTER TABLE users ADD COLUMN status TEXT DEFAULT 'active' NOT NULL;

ALTER TABLE orders ALTER COLUMN quantity TYPE BIGINT;

UPDATE users SET status = 'legacy' WHERE created < '2020-01-01';

UPDATE alembic_version SET version_num='b2c3d4e5f6a7' WHERE alembic_version.version_num = 'a1b2c3d4e5f6';

COMMIT;
"""

_ALEMBIC_CONCURRENT = """\
BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> c3d4e5f6a7b8

SET lock_timeout = '2s';

SET statement_timeout = '5s';

ALTER TABLE users ADD COLUMN email TEXT;

ALTER TABLE orders ADD CONSTRAINT fk_orders_user FOREIGN KEY(user_id) REFERENCES users (id) NOT VALID;

COMMIT;

SET statement_timeout = 0;

CREATE INDEX CONCURRENTLY ix_users_email ON users (email);

ALTER TABLE orders VALIDATE CONSTRAINT fk_orders_user;

BEGIN;

INSERT INTO alembic_version (version_num) VALUES ('c3d4e5f6a7b8') RETURNING alembic_version.version_num;

COMMIT;
"""

# the alembic_version insert runs in the transaction of the DDL: one row of bookkeeping, not a data change
_ALEMBIC_SAFE_IN_ONE_TRANSACTION = """\
BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> d4e5f6a7b8c9

SET lock_timeout = '2s';

SET statement_timeout = '5s';

ALTER TABLE users ADD COLUMN note TEXT;

ALTER TABLE users ADD COLUMN active BOOLEAN DEFAULT true NOT NULL;

INSERT INTO alembic_version (version_num) VALUES ('d4e5f6a7b8c9') RETURNING alembic_version.version_num;

COMMIT;
"""

# Django: `manage.py sqlmigrate` output (Django is not a dependency: written out in the format Django 5
# prints): AddField with a default on a NOT NULL field, a ForeignKey, RunSQL, and a non-atomic migration
# with AddIndexConcurrently.
_DJANGO_ADD_FIELDS = """\
BEGIN;
--
-- Add field email to customer
--
ALTER TABLE "shop_customer" ADD COLUMN "email" varchar(254) DEFAULT '' NOT NULL;
ALTER TABLE "shop_customer" ALTER COLUMN "email" DROP DEFAULT;
--
-- Add field customer to order
--
ALTER TABLE "shop_order" ADD COLUMN "customer_id" bigint NULL CONSTRAINT "shop_order_customer_id_9e3fcd0e_fk_shop_customer_id" REFERENCES "shop_customer"("id") DEFERRABLE INITIALLY DEFERRED; SET CONSTRAINTS "shop_order_customer_id_9e3fcd0e_fk_shop_customer_id" IMMEDIATE;
CREATE INDEX "shop_order_customer_id_9e3fcd0e" ON "shop_order" ("customer_id");
COMMIT;
"""

_DJANGO_DATA_MIGRATION = """\
BEGIN;
--
-- Raw SQL operation
--
SET lock_timeout = '2s'; SET statement_timeout = '5s';
--
-- Add field tier to customer
--
ALTER TABLE "shop_customer" ADD COLUMN "tier" varchar(16) NULL;
--
-- Raw SQL operation
--
UPDATE "shop_customer" SET "tier" = 'gold' WHERE "lifetime_value" > 1000;
COMMIT;
"""

_DJANGO_NON_ATOMIC_INDEX = """\
--
-- Raw SQL operation
--
SET lock_timeout = '2s'; SET statement_timeout = '5s';
--
-- Add field note to customer
--
ALTER TABLE "shop_customer" ADD COLUMN "note" text NULL;
--
-- Concurrently create index shop_custo_note_5c2a1f_idx on field(s) note of model customer
--
CREATE INDEX CONCURRENTLY "shop_custo_note_5c2a1f_idx" ON "shop_customer" ("note");
"""

_TIMEOUTS = PREAMBLE

SCRIPTS: list[Case] = [
    Case(
        "alembic-unsafe",
        _ALEMBIC_UNSAFE,
        True,
        (
            "missing-lock-timeout",
            "index-not-concurrent",
            "foreign-key-not-valid",
            "column-type-change",
            "ddl-and-dml-in-transaction",
        ),
        frozenset(
            {
                "require-lock-timeout",
                "require-statement-timeout",
                "require-concurrent-index-creation",
                "constraint-missing-not-valid",
                "adding-foreign-key-constraint",
                "changing-column-type",
            }
        ),
        "alembic",
    ),
    Case("alembic-concurrent-index", _ALEMBIC_CONCURRENT, False, (), frozenset(), "alembic"),
    Case(
        "alembic-safe-one-transaction",
        _ALEMBIC_SAFE_IN_ONE_TRANSACTION,
        False,
        (),
        frozenset(),
        "alembic",
    ),
    Case(
        "django-add-fields",
        _DJANGO_ADD_FIELDS,
        True,
        (
            "missing-lock-timeout",
            "add-column-not-null-without-default",
            "foreign-key-not-valid",
            "index-not-concurrent",
        ),
        frozenset(
            {
                "require-lock-timeout",
                "require-statement-timeout",
                "ban-drop-default",
                "adding-foreign-key-constraint",
                "require-concurrent-index-creation",
            }
        ),
        "django",
    ),
    Case(
        "django-data-migration",
        _DJANGO_DATA_MIGRATION,
        True,
        ("ddl-and-dml-in-transaction",),
        frozenset(),
        "django",
        note="the UPDATE runs in the transaction that holds the ADD COLUMN's ACCESS EXCLUSIVE lock, so every "
        "query on the table waits for the whole update; squawk looks at statements one by one",
    ),
    Case("django-non-atomic-index", _DJANGO_NON_ATOMIC_INDEX, False, (), frozenset(), "django"),
    Case(
        "no-timeouts",
        "ALTER TABLE users ADD COLUMN note text;\n",
        True,
        ("missing-lock-timeout",),
        frozenset({"require-lock-timeout", "require-statement-timeout"}),
        "script",
    ),
    Case(
        "lock-timeout-only",
        "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN note text;\n",
        False,
        (),
        frozenset({"require-statement-timeout"}),
        "script",
        note="squawk also requires statement_timeout; gapless only lock_timeout: once a statement that passes "
        "the other rules has its lock it is a catalog change, so its run time is not the risk",
    ),
    Case(
        "set-not-null-after-validated-check",
        _TIMEOUTS + "ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE users VALIDATE CONSTRAINT email_nn;\n"
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n",
        False,
        (),
        frozenset(),
        "script",
    ),
    Case(
        "created-table",
        _TIMEOUTS + "CREATE TABLE notes (id bigint PRIMARY KEY, user_id bigint);\n"
        "CREATE INDEX notes_user ON notes (user_id);\n"
        "ALTER TABLE notes ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id);\n"
        "ALTER TABLE notes ALTER COLUMN user_id SET NOT NULL;\n",
        False,
        (),
        frozenset(
            {
                "require-concurrent-index-creation",
                "adding-foreign-key-constraint",
                "constraint-missing-not-valid",
                "adding-not-nullable-field",
            }
        ),
        "script",
        note="nobody uses a table created earlier in the same script: gapless exempts it; squawk exempts it "
        "only inside one transaction",
    ),
    Case(
        "created-table-in-transaction",
        _TIMEOUTS + "BEGIN;\nCREATE TABLE notes (id bigint PRIMARY KEY, user_id bigint);\n"
        "CREATE INDEX notes_user ON notes (user_id);\n"
        "ALTER TABLE notes ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id);\n"
        "ALTER TABLE notes ALTER COLUMN user_id SET NOT NULL;\nCOMMIT;\n",
        False,
        (),
        frozenset({"adding-not-nullable-field"}),
        "script",
        note="squawk exempts the index and foreign key on a table created in the same transaction, not SET "
        "NOT NULL",
    ),
    Case(
        "create-index-concurrently-in-transaction",
        _TIMEOUTS + "BEGIN;\nCREATE INDEX CONCURRENTLY users_email ON users (email);\nCOMMIT;\n",
        True,
        ("concurrently-in-transaction",),
        frozenset({"ban-concurrent-index-creation-in-transaction"}),
        "script",
    ),
    Case(
        "drop-index-concurrently-in-transaction",
        _TIMEOUTS + "BEGIN;\nDROP INDEX CONCURRENTLY users_email;\nCOMMIT;\n",
        True,
        ("concurrently-in-transaction",),
        frozenset(),
        "script",
        note="PostgreSQL refuses DROP INDEX CONCURRENTLY in a transaction block, so the migration fails half "
        "way; squawk's rule covers only CREATE INDEX CONCURRENTLY",
    ),
]

CORPUS: list[Case] = STATEMENTS + SCRIPTS


def squawk_binary() -> str | None:
    """The ``squawk`` executable of the running environment (the ``squawk-cli`` wheel), else on PATH."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file():
        return str(beside)
    return shutil.which("squawk")


def squawk_version(binary: str) -> str:
    """``2.70.0`` from ``squawk --version``."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.split()[-1]


def write_corpus(directory: Path, cases: Sequence[Case] = CORPUS) -> dict[str, Path]:
    """Each case's text as ``<name>.sql`` in ``directory`` (with an empty squawk config beside them)."""
    (directory / "squawk.toml").write_text("")
    paths = {}
    for case in cases:
        path = directory / f"{case.name}.sql"
        path.write_text(case.text, encoding="utf-8")
        paths[case.name] = path
    return paths


def run_squawk(binary: str, paths: Sequence[Path]) -> dict[Path, list[str]]:
    """squawk's rule names (in its order, style rules included) per file, from one run over all of them.

    The config is the empty ``squawk.toml`` that :func:`write_corpus` writes, so no ``.squawk.toml`` of the
    working directory or its parents changes the result; no file is assumed to run in a transaction.
    """
    config = paths[0].parent / "squawk.toml"
    out = subprocess.run(
        [binary, "--config", str(config), "--reporter", "json", *map(str, paths)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode not in (0, 1):
        raise RuntimeError(f"squawk exited {out.returncode}: {out.stderr.strip()}")
    found: dict[Path, list[str]] = {p: [] for p in paths}
    for violation in json.loads(out.stdout or "[]"):
        found[Path(violation["file"])].append(violation["rule_name"])
    return found
