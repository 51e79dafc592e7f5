"""Alembic migrations of the flag service's own tables (applied by ``FlagStore.open``)."""
