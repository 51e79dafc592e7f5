"""The built-in router: gapless's data plane.

It runs as its own process (``gapless router NAME``), serves the rollout's public address, and takes its
configuration from the control plane over an admin API on a unix socket. It keeps serving with its last
configuration when the control plane is gone.
"""
