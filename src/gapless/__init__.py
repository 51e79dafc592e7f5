"""gapless: zero-downtime deployments of HTTP services.

The package is layered (see docs/architecture.md): faces (CLI, HTTP API) call services (the controller),
which call pure logic (strategies) and adapters (platform, router, store); everything may use core types
and the validated spec.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
