"""``gapless operator``: run the Kubernetes operator that reconciles Rollouts on a cluster.

``gapless operator run`` connects with a kubeconfig (``--kubeconfig``, else ``$KUBECONFIG`` or
``~/.kube/config``, else the in-cluster ServiceAccount) and reconciles the Rollouts of one namespace
(``-n``) or of all namespaces, until SIGTERM or Ctrl-C. With ``--leader-elect`` it first takes the
Lease ``gapless-operator``; a second replica waits for it, and a holder that loses it exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from gapless.controller.annotations import AnnotationSender
    from gapless.controller.kube_operator import Operator
    from gapless.platform.kubernetes.lease import LeaderElector

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
    leader_elect: Annotated[
        bool,
        typer.Option(
            "--leader-elect",
            help="hold the Lease gapless-operator before reconciling, so a second replica waits",
        ),
    ] = False,
    lease_namespace: Annotated[
        str | None,
        typer.Option(
            "--lease-namespace", help="namespace of the Lease (default: -n, the pod's own, or default)"
        ),
    ] = None,
    lease_seconds: Annotated[
        int, typer.Option("--lease-seconds", min=3, max=300, help="lease duration; renewed every third of it")
    ] = 15,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, max=64, help="Rollouts reconciled at once (never one Rollout twice)"
        ),
    ] = 4,
    grafana_url: Annotated[
        str | None,
        typer.Option(
            "--grafana-url",
            envvar="GAPLESS_GRAFANA_URL",
            metavar="URL",
            help="Also post every event the operator writes to this Grafana as an annotation.",
            show_default=False,
        ),
    ] = None,
    grafana_token_file: Annotated[
        Path | None,
        typer.Option(
            "--grafana-token-file",
            metavar="PATH",
            help="File holding the Grafana API token (else $GAPLESS_GRAFANA_TOKEN).",
            show_default=False,
        ),
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
    annotations = _annotations(grafana_url, grafana_token_file)
    try:
        config = load_config(kubeconfig)
        api = KubeApi(config, context=context, namespace=namespace)
    except (ConfigError, OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        where = f" from {kubeconfig}" if kubeconfig is not None else ""
        typer.echo(f"error: cannot load the Kubernetes configuration{where}: {e}", err=True)
        raise typer.Exit(2) from e

    async def main() -> int:
        op = Operator(api, namespace=namespace, annotations=annotations, workers=workers)
        elector = None
        if leader_elect:
            from gapless.platform.kubernetes.lease import LeaderElector

            identity = f"{socket.gethostname()}-{os.getpid()}"
            elector = LeaderElector(
                api, lease_namespace or namespace or _pod_namespace(), identity, duration=lease_seconds
            )
        task = asyncio.create_task(_lead(op, elector))
        server = None
        if address is not None:
            from gapless.server.operator_http import operator_server

            server = operator_server(op, *address)
            serving = asyncio.create_task(server.serve())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        code = 0
        try:
            await task
        except asyncio.CancelledError:
            pass
        except LeaseLostError as e:
            logging.getLogger(__name__).error("%s: stopping", e)
            code = 1
        finally:
            if server is not None:
                server.should_exit = True
                await serving
            await api.close()
        return code

    from gapless.platform.kubernetes.lease import LeaseLostError

    raise typer.Exit(asyncio.run(main()))


async def _lead(op: Operator, elector: LeaderElector | None) -> None:
    """Reconcile; with an elector, only while holding its Lease (losing it ends the operator)."""
    if elector is None:
        await op.run()
        return
    logging.getLogger(__name__).info("waiting for the lease %s/%s", elector.namespace, elector.name)
    await elector.acquire()
    logging.getLogger(__name__).info("holding the lease as %s", elector.identity)
    running = asyncio.create_task(op.run())
    holding = asyncio.create_task(elector.hold())
    try:
        done, _ = await asyncio.wait({running, holding}, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            t.result()
    finally:
        for t in (running, holding):
            t.cancel()
        for t in (running, holding):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


def _annotations(url: str | None, token_file: Path | None) -> AnnotationSender | None:
    """The Grafana annotation sink of ``--grafana-url``; exit 2 naming the option for a bad URL or an
    unreadable token file."""
    if url is None:
        return None
    from gapless.controller.annotations import AnnotationSender

    if not url.startswith(("http://", "https://")):
        typer.echo(f"error: --grafana-url {url!r}: must start with http:// or https://", err=True)
        raise typer.Exit(2)
    token = os.environ.get("GAPLESS_GRAFANA_TOKEN", "")
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as e:
            typer.echo(f"error: --grafana-token-file {token_file}: {e.strerror or e}", err=True)
            raise typer.Exit(2) from e
    return AnnotationSender(url, token)


def _pod_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return path.read_text().strip() or "default"
    except OSError:
        return "default"
