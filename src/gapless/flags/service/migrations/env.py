"""Alembic environment: migrations run on the connection ``FlagStore`` passes in, never from a URL here."""

from __future__ import annotations

from alembic import context

from gapless.flags.service.schema import metadata

VERSION_TABLE = "flag_alembic_version"

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
