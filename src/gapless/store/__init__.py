"""Durable state of the control plane in SQLite, every change in one transaction."""
