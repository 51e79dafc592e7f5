"""Tests of zero-downtime schema migrations."""
