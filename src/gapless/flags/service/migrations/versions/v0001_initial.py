"""The first schema of the flag service.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flag_projects",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("environments", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    for table in ("flag_flags", "flag_segments"):
        columns: list[sa.Column[Any]] = [
            sa.Column(
                "project",
                sa.String(128),
                sa.ForeignKey("flag_projects.key", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column("key", sa.String(128), primary_key=True),
            sa.Column("doc", sa.Text, nullable=False),
        ]
        if table == "flag_flags":
            columns += [
                sa.Column("archived", sa.Boolean, nullable=False),
                sa.Column("created_at", sa.Float, nullable=False),
            ]
        op.create_table(table, *columns, sa.Column("updated_at", sa.Float, nullable=False))
    op.create_table(
        "flag_rulesets",
        sa.Column(
            "project",
            sa.String(128),
            sa.ForeignKey("flag_projects.key", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("environment", sa.String(64), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("ruleset", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.Float, nullable=False),
    )
    op.create_table(
        "flag_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("token_name", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("before", sa.Text),
        sa.Column("after", sa.Text),
    )
    op.create_index("flag_audit_by_project", "flag_audit", ["project", "id"])
    op.create_table(
        "flag_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("project", sa.String(128)),
        sa.Column("environment", sa.String(64)),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_table(
        "flag_sdk_clients",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("environment", sa.String(64), primary_key=True),
        sa.Column("sdk_id", sa.String(128), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("applied_at", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("streaming", sa.Boolean, nullable=False),
    )
    op.create_table(
        "flag_evaluations",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("environment", sa.String(64), primary_key=True),
        sa.Column("flag", sa.String(128), primary_key=True),
        sa.Column("variant", sa.String(128), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "flag_evaluations",
        "flag_sdk_clients",
        "flag_tokens",
        "flag_audit",
        "flag_rulesets",
        "flag_segments",
        "flag_flags",
        "flag_projects",
    ):
        op.drop_table(table)
