"""spec.router becomes the router's Limits."""

from __future__ import annotations

from gapless.controller.routing import limits_for
from gapless.router.config import Limits
from gapless.spec.models import RolloutSpec


def test_router_settings_default_to_the_routers_limits() -> None:
    """spec.router's defaults are the router's own, field by field, so leaving the block out changes nothing."""
    spec = RolloutSpec.model_validate({"listen": "127.0.0.1:8080", "template": {"command": ["x"]}})
    assert limits_for(spec) == Limits()
    custom = RolloutSpec.model_validate(
        {
            "listen": "127.0.0.1:8080",
            "template": {"command": ["x"]},
            "router": {"backendTimeoutSeconds": 2.5, "maxConnections": 50, "ejectAfterFailures": 1},
        }
    )
    assert limits_for(custom) == Limits(backend_timeout=2.5, max_connections=50, eject_after=1)
