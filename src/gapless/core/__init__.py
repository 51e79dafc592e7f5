"""Core types shared by every layer: the clock, errors and identifiers. No I/O lives here."""
