"""Release steps reach the flag service through its own HTTP API, in process (the app mounted at ``/flags``).

Going through the API rather than its store keeps one path for every flag change: validation, the audit
log (under the ``gapless releases`` admin token), pushes to streaming SDKs, and the control-plane event
each change makes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from starlette.types import ASGIApp

from gapless.controller.release import FlagError

__all__ = ["HttpFlags"]


class HttpFlags:
    """``FlagService`` over the flag service's admin API."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://flags",
            headers={"authorization": f"Bearer {token}"},
            timeout=30.0,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    @staticmethod
    def _path(project: str, flag: str, *rest: str) -> str:
        return "/".join(["/api/v1/projects", quote(project, safe=""), "flags", quote(flag, safe=""), *rest])

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self._client.request(method, path, json=body)
        if response.status_code < 400:
            return response.json()
        try:
            message = str(response.json().get("error", response.text))
        except ValueError:
            message = response.text
        raise FlagError(
            message,
            temporary=response.status_code in (429, 503) or response.status_code >= 500,
            missing=response.status_code == 404,
        )

    async def get(self, project: str, flag: str) -> dict[str, Any]:
        doc = await self._call("GET", self._path(project, flag))
        if not isinstance(doc, dict):
            raise FlagError(f"flag {flag!r}: the flag service answered with no document")
        return doc

    async def enable(self, project: str, flag: str, environment: str) -> None:
        await self._call(
            "POST", self._path(project, flag, "environments", quote(environment, safe=""), "enable")
        )

    async def go_to_stage(self, project: str, flag: str, environment: str, stage: int) -> None:
        env = quote(environment, safe="")
        await self._call(
            "POST", self._path(project, flag, "environments", env, "release", "advance"), {"stage": stage}
        )

    async def put_back(
        self, project: str, flag: str, environment: str, enabled: bool, stage: int | None
    ) -> None:
        """Set the flag's state in ``environment`` to ``enabled`` and release stage ``stage`` (idempotent)."""
        doc = await self.get(project, flag)
        envs = dict(doc.get("environments") or {})
        env = dict(envs.get(environment) or {})
        env["enabled"] = enabled
        plan = env.get("releasePlan")
        if stage is not None and isinstance(plan, dict) and plan.get("currentStage", 0) != stage:
            env["releasePlan"] = plan | {"currentStage": stage}
        envs[environment] = env
        doc = {k: v for k, v in doc.items() if k not in ("createdAt", "updatedAt")} | {"environments": envs}
        await self._call("PUT", self._path(project, flag), doc)
