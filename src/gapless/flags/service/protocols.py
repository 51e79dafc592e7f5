"""The flag service's protocol faces, mounted on its app: OFREP and the Unleash client API.

They sit beside the gapless SDK endpoints and share their compiled rulesets and usage counts; see
``protocol`` for what they share and each module for its protocol.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gapless.flags.service.hub import Hub
from gapless.flags.service.ofrep import mount_ofrep
from gapless.flags.service.protocol import Acks, Compiled, ProtocolError, Revisions, SdkTokens, UsageCounter
from gapless.flags.service.store import FlagStore
from gapless.flags.service.unleash_api import mount_unleash

__all__ = ["mount_protocols"]


def mount_protocols(
    app: FastAPI, store: FlagStore, hub: Hub, acks: Acks, tokens: SdkTokens, usage: UsageCounter
) -> None:
    """Add the OFREP and Unleash endpoints to ``app``, over ``store`` and ``hub``; SDKs' reports of
    the revision they have go to ``acks``, their tokens are verified by ``tokens`` and evaluation counts
    go to ``usage`` (all three shared with the gapless SDK endpoints)."""
    revisions = Revisions(store, hub)
    compiled = Compiled(store, revisions)
    app.state.sdk_tokens = tokens  # forgotten when a token is revoked

    @app.exception_handler(ProtocolError)
    async def _refused(_: Request, e: ProtocolError) -> Response:
        """A refused protocol request, in the protocol's own error shape."""
        return JSONResponse(e.body, status_code=e.status)

    app.state.usage = usage  # flushed by tests, and by whoever wants the counts written now
    app.state.acks = acks  # likewise for the revisions SDKs reported
    mount_ofrep(app, store, tokens, hub, compiled, usage)
    mount_unleash(app, store, tokens, hub, revisions, compiled, usage, acks)
