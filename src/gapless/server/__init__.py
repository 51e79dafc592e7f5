"""The control plane's HTTP API (Starlette), served on a unix socket with a bearer token."""
