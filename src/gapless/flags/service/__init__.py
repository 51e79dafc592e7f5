"""The flag service: storage (SQLite or PostgreSQL), the admin and SDK HTTP API, streaming to SDKs.

| module | holds |
|---|---|
| ``schema`` | the tables (SQLAlchemy Core) |
| ``migrations`` | Alembic migrations of those tables, applied on start |
| ``store`` | ``FlagStore``: every change in one transaction with its audit row and new revisions |
| ``tokens`` | admin and SDK tokens, stored as SHA-256 digests |
| ``hub`` | in-process fan-out of new revisions to connected SDK streams |
| ``app`` | the FastAPI app (OpenAPI at ``/openapi.json``) |
| ``serve`` | ``gapless flags serve`` |
| ``protocols`` | mounts the protocol faces on the app: ``ofrep`` (OpenFeature remote evaluation) and ``unleash_api`` (Unleash's client API) |
| ``protocol`` | what the faces share: SDK-token scopes, compiled rulesets per revision, usage counts |
| ``relay`` | LISTEN/NOTIFY: changes made through other service processes on the same PostgreSQL reach this one's streams |
"""
