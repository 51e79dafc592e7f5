"""``gapless operator``: run the Kubernetes operator that reconciles Rollouts on a cluster.

``gapless operator run`` connects with a kubeconfig (``--kubeconfig``, else ``$KUBECONFIG`` or
``~/.kube/config``, else the in-cluster ServiceAccount) and reconciles the Rollouts of one namespace
(``-n``) or of all namespaces, until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["operator_app"]

operator_app = typer.Typer(
    help="The Kubernetes operator: reconciles Rollouts on a cluster (rolling updates as ReplicaSets).",
    no_args_is_help=True,
)


@operator_app.command("run")
def run(
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
        ),
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="kubeconfig context (default: its current one)")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("-n", "--namespace", help="reconcile only this namespace (default: all)")
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option("--listen", help="serve /healthz and /metrics on HOST:PORT (default: not served)"),
    ] = None,
) -> None:
    """Reconcile the cluster's Rollouts until SIGTERM or Ctrl-C."""
    import yaml
    from lightkube import ConfigError

    from gapless.controller.kube_operator import Operator
    from gapless.platform.kubernetes.client import KubeApi, load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not os.environ.get("GAPLESS_K8S_DEBUG"):
        logging.getLogger("httpx2").setLevel(logging.WARNING)
    address: tuple[str, int] | None = None
    if listen is not None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            typer.echo(f"error: --listen: expected HOST:PORT, e.g. 0.0.0.0:8080, not {listen!r}", err=True)
            raise typer.Exit(2)
        address = (host.strip("[]"), int(port))
    if kubeconfig is not None and not kubeconfig.is_file():
        typer.echo(f"error: --kubeconfig: no such file: {kubeconfig}", err=True)
        raise typer.Exit(2)
    try:
        config = load_config(kubeconfig)
        api = KubeApi(config, context=context, namespace=namespace)
    except (ConfigError, OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        where = f" from {kubeconfig}" if kubeconfig is not None else ""
        typer.echo(f"error: cannot load the Kubernetes configuration{where}: {e}", err=True)
        raise typer.Exit(2) from e

    async def main() -> None:
        op = Operator(api, namespace=namespace)
        task = asyncio.create_task(op.run())
        server = None
        if address is not None:
            from gapless.server.operator_http import operator_server

            server = operator_server(op, *address)
            serving = asyncio.create_task(server.serve())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            if server is not None:
                server.should_exit = True
                await serving
            await api.close()

    asyncio.run(main())
