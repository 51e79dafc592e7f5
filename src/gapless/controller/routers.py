"""The controller's ``Traffic``: each rollout's router is the built-in one or HAProxy, per ``spec.router.type``.

The kind is handed to ``ensure`` (``RouterChoice``) on every pass; until then (a control plane that just
started, adopting what runs) a rollout with saved HAProxy state is taken to be served by HAProxy. When
the type changes, the other kind's router is stopped first so the new one can bind the address.
"""

from __future__ import annotations

from gapless.controller.haproxy import HaproxyRouters
from gapless.controller.traffic import LocalRouters, RouterChoice, RouterState, Routing
from gapless.router.config import Backend, Limits
from gapless.router.stats import RouterStats

__all__ = ["Routers"]


class Routers:
    """``Traffic`` for every rollout: the built-in router or HAProxy, as its ``spec.router.type`` says."""

    def __init__(self, builtin: LocalRouters, haproxy: HaproxyRouters) -> None:
        self.builtin = builtin
        self.haproxy = haproxy
        self._kind: dict[str, str] = {}

    def _of(self, rollout: str) -> LocalRouters | HaproxyRouters:
        kind = self._kind.get(rollout)
        if kind is None:
            kind = "haproxy" if self.haproxy.has_state(rollout) else "builtin"
        return self.haproxy if kind == "haproxy" else self.builtin

    async def ensure(
        self,
        rollout: str,
        listen: str,
        limits: Limits | None = None,
        *,
        trust_for: float = 0.0,
        router: RouterChoice | None = None,
    ) -> None:
        impl = self._of(rollout)
        if router is not None:
            wanted = self.haproxy if router.type == "haproxy" else self.builtin
            if wanted is not impl:
                await impl.remove(rollout)  # the other kind gives up the address first
            self._kind[rollout] = router.type
            impl = wanted
        await impl.ensure(rollout, listen, limits, trust_for=trust_for, router=router)

    async def address(self, rollout: str) -> str | None:
        return await self._of(rollout).address(rollout)

    async def set_backends(
        self, rollout: str, backends: list[Backend], routing: Routing | None = None
    ) -> bool:
        return await self._of(rollout).set_backends(rollout, backends, routing)

    def routing(self, rollout: str) -> Routing | None:
        return self._of(rollout).routing(rollout)

    async def wait_drained(self, rollout: str, backend_id: str, timeout: float) -> bool:
        return await self._of(rollout).wait_drained(rollout, backend_id, timeout)

    async def stats(self, rollout: str) -> RouterStats | None:
        return await self._of(rollout).stats(rollout)

    def state(self, rollout: str) -> RouterState:
        return self._of(rollout).state(rollout)

    def known(self) -> set[str]:
        return self.builtin.known() | self.haproxy.known()

    async def remove(self, rollout: str) -> None:
        await self._of(rollout).remove(rollout)
        self._kind.pop(rollout, None)

    async def aclose(self) -> None:
        await self.builtin.aclose()
        await self.haproxy.aclose()
