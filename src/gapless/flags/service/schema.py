"""Tables of the flag service. Documents are stored as validated JSON text, one row per flag or segment.

A flag's row holds the whole flag (every environment) as the admin API accepts it. For each environment
the service also keeps the compiled ruleset that SDKs get (``rulesets``), with a revision number that
grows by one whenever that environment's ruleset changes, so delivery can be tracked per revision.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "audit",
    "evaluations",
    "flags",
    "metadata",
    "projects",
    "rulesets",
    "sdk_clients",
    "segments",
    "tokens",
]

metadata = MetaData()

projects = Table(
    "flag_projects",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("environments", Text, nullable=False),  # JSON list, in order
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

flags = Table(
    "flag_flags",
    metadata,
    Column("project", String(128), ForeignKey("flag_projects.key", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("doc", Text, nullable=False),
    Column("archived", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

segments = Table(
    "flag_segments",
    metadata,
    Column("project", String(128), ForeignKey("flag_projects.key", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("doc", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

rulesets = Table(
    "flag_rulesets",
    metadata,
    Column("project", String(128), ForeignKey("flag_projects.key", ondelete="CASCADE"), primary_key=True),
    Column("environment", String(64), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("ruleset", Text, nullable=False),  # JSON, revision included
    Column("digest", String(64), nullable=False),  # of the ruleset without its revision
    Column("changed_at", Float, nullable=False),
)

audit = Table(
    "flag_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("token_id", String(32), nullable=False),
    Column("token_name", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("project", String(128), nullable=False),
    Column("target", String(256), nullable=False, default=""),
    Column("before", Text),
    Column("after", Text),
    Index("flag_audit_by_project", "project", "id"),
)

tokens = Table(
    "flag_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # admin | sdk
    Column("project", String(128)),
    Column("environment", String(64)),
    Column("digest", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

sdk_clients = Table(
    "flag_sdk_clients",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("environment", String(64), primary_key=True),
    Column("sdk_id", String(128), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("applied_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("streaming", Boolean, nullable=False, default=False),
)

evaluations = Table(
    "flag_evaluations",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("environment", String(64), primary_key=True),
    Column("flag", String(128), primary_key=True),
    Column("variant", String(128), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last_at", Float, nullable=False),
)
