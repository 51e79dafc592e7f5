"""Zero-downtime schema migrations."""
