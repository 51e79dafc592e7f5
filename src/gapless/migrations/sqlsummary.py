"""The strongest lock a raw SQL script takes, the tables it names, and whether it may rewrite one.

Shown for ``sql`` operations in a plan, and used to name the sessions that block such a step.
"""

from __future__ import annotations

from dataclasses import dataclass

from gapless.migrations.sqltext import (
    SqlTextError,
    has_phrase,
    index_table,
    qualified_name,
    skip_phrase,
    split_statements,
    split_top_level,
)

__all__ = ["LOCK_ORDER", "SqlSummary", "summarize_sql"]

LOCK_ORDER = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)


@dataclass(frozen=True)
class SqlSummary:
    """What a script touches: the strongest lock level it takes, on which tables, and whether it rewrites."""

    lock: str
    tables: tuple[str, ...]
    rewrites: bool


def summarize_sql(text: str) -> SqlSummary:
    """The strongest lock a script takes, the tables it names, and whether it may rewrite one."""
    try:
        statements = split_statements(text)
    except SqlTextError:
        return SqlSummary("unknown", (), False)
    strongest = -1
    tables: list[str] = []
    rewrites = False
    for s in statements:
        words = s.words
        if not words:
            continue
        head = words[0]
        level: str | None = None
        if head == "ALTER" and words[1:2] == ["TABLE"]:
            i = skip_phrase(words, 2, "IF", "EXISTS")
            i = skip_phrase(words, i, "ONLY")
            name, _ = qualified_name(s.tokens, i)
            tables.append(name)
            only_validate = all(p and p[0].upper == "VALIDATE" for p in split_top_level(s.tokens[i + 1 :]))
            level = "SHARE UPDATE EXCLUSIVE" if only_validate else "ACCESS EXCLUSIVE"
            rewrites = rewrites or has_phrase(words, "TYPE") or has_phrase(words, "SET", "TABLESPACE")
        elif head == "CREATE" and "INDEX" in words[:3]:
            tables.append(index_table(s))
            level = "SHARE UPDATE EXCLUSIVE" if "CONCURRENTLY" in words else "SHARE"
        elif head == "DROP" and words[1:2] == ["TABLE"]:
            name, _ = qualified_name(s.tokens, skip_phrase(words, 2, "IF", "EXISTS"))
            tables.append(name)
            level = "ACCESS EXCLUSIVE"
        elif head in ("UPDATE", "DELETE", "INSERT"):
            k = 1 if head == "UPDATE" else 2
            k = skip_phrase(words, k, "ONLY")
            if k < len(s.tokens):
                name, _ = qualified_name(s.tokens, k)
                tables.append(name)
            level = "ROW EXCLUSIVE"
        elif head in ("VACUUM", "CLUSTER", "TRUNCATE", "LOCK", "DROP", "REINDEX"):
            level = "ACCESS EXCLUSIVE"
            rewrites = rewrites or head in ("VACUUM", "CLUSTER")
        elif head == "SELECT":
            level = "ACCESS SHARE"
        if level is not None:
            strongest = max(strongest, LOCK_ORDER.index(level))
    lock = LOCK_ORDER[strongest] if strongest >= 0 else "none"
    return SqlSummary(lock, tuple(dict.fromkeys(t for t in tables if t)), rewrites)
