"""The built-in router: gapless's data plane.

It runs as its own process (``gapless router NAME``), serves the rollout's public address, and takes its
configuration from the control plane over an admin API on a unix socket. It keeps serving with its last
configuration when the control plane is gone.

Modules, from the wire inwards:

- ``downstream`` / ``upstream``: the client and backend sides of the proxy (``asyncio.Protocol`` over
  ``httptools``), ``reader``: request framing and the head limit, ``exchange``: one request in flight,
  ``headers``: head rewriting, ``answers``: what the router answers itself (400, 408, 431, 502-504);
- ``balancer``: weighted routing tables, ``pool``: a backend's keep-alive connections and counters,
  ``counters`` / ``stats``: what is counted and how it is reported;
- ``proxy``: the router's state and listener, and its defences (timeouts, connection limit),
  ``admin``: the admin API, ``persist``: its files, ``process``: the OS processes
  (``python -m gapless.router``), ``supervisor``: the parent that holds the listening socket and
  restarts the worker;
- ``config``: the contract with the control plane, ``client``: the control plane's ``RouterClient``.

This package imports nothing of the control plane (an import-linter contract).
"""
