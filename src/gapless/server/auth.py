"""The control plane's admin token: random, shown to the local CLI through a 0600 file, stored hashed.

The plaintext lives only in ``<state_dir>/token`` (readable by the owner alone, like a kubeconfig); the
database keeps its SHA-256, and requests are checked by comparing digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from gapless.core.files import TOKEN_FILE
from gapless.store.sqlite import Store

__all__ = ["ensure_token", "read_token", "token_digest", "token_matches"]

META_KEY = "api_token_sha256"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(presented: str | None, digest: str) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(token_digest(presented), digest)


def read_token(state_dir: Path) -> str:
    return (state_dir / TOKEN_FILE).read_text().strip()


def ensure_token(state_dir: Path, store: Store) -> str:
    """Create the token on first start; afterwards reuse the one on disk. Returns the digest.

    The file wins over the database: routers read it when they start and keep only its digest, so a
    new token (after ``state.db`` was lost) would lock the control plane out of the routers it must
    adopt. Whoever can replace the 0600 file owns the state directory anyway.
    """
    path = state_dir / TOKEN_FILE
    digest = store.get_meta(META_KEY)
    existing = read_token(state_dir) if path.exists() else ""
    if len(existing) >= 32:
        if digest is None or not token_matches(existing, digest):
            digest = token_digest(existing)
            store.set_meta(META_KEY, digest)
        return digest
    token = secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    digest = token_digest(token)
    store.set_meta(META_KEY, digest)
    return digest
