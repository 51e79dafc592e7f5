"""HAProxy as a rollout's data plane: its configuration, weights, runtime API and binary (adapters).

``config`` and ``weights`` are pure (names, the configuration text, the split of revision weights over
servers); ``runtime`` speaks HAProxy's runtime API on its unix socket; ``binary`` checks the executable.
The controller's ``HaproxyRouters`` (``gapless.controller.haproxy``) puts them together behind ``Traffic``.
"""
