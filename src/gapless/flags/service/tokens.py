"""Admin and SDK tokens: ``gfl_<id>_<secret>``; only the SHA-256 of the whole token is stored.

The id part lets the service find the row without comparing against every digest; the comparison
itself is constant-time. An admin token may change anything; an SDK token reads the ruleset of one
project environment and reports what its SDK applied and evaluated.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

__all__ = ["PREFIX", "TokenKind", "TokenRecord", "digest", "new_token", "split_token", "verify"]

PREFIX = "gfl_"
TokenKind = Literal["admin", "sdk"]


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    kind: TokenKind
    project: str | None
    environment: str | None
    digest: str
    created_at: float
    revoked_at: float | None = None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh ``(id, token)``."""
    id_ = secrets.token_hex(6)
    return id_, f"{PREFIX}{id_}_{secrets.token_urlsafe(32)}"


def split_token(token: str) -> str | None:
    """The id part of a well-formed token, else None."""
    if not token.startswith(PREFIX):
        return None
    rest = token[len(PREFIX) :]
    id_, sep, secret = rest.partition("_")
    if not sep or len(id_) != 12 or not secret:
        return None
    return id_


def verify(token: str, record: TokenRecord | None) -> bool:
    """Constant-time check of a presented token against its stored record (revoked tokens fail)."""
    if record is None or record.revoked_at is not None:
        return False
    return hmac.compare_digest(digest(token), record.digest)
