"""The ``gapless`` command line: a thin face over the control plane's HTTP API."""
