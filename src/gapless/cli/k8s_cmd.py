"""``gapless k8s``: what a cluster needs before the operator can run there.

``gapless k8s manifests`` prints the install (CRDs, namespace, RBAC, the operator Deployment) as one
multi-document YAML for ``kubectl apply -f -``: the same objects as ``deploy/kubernetes/``, taken from
the installed package (:mod:`gapless.platform.kubernetes.install`), so no checkout is needed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from gapless.platform.kubernetes.install import DEFAULT_IMAGE, DEFAULT_NAMESPACE
from gapless.platform.kubernetes.install import manifests as render

__all__ = ["k8s_app"]

k8s_app = typer.Typer(
    help="Kubernetes install: print the CRDs, RBAC and operator Deployment to apply to a cluster.",
    no_args_is_help=True,
)


@k8s_app.callback()
def _group() -> None:
    """Kubernetes install: print the CRDs, RBAC and operator Deployment to apply to a cluster."""


_MANIFESTS_HELP = (
    "Print the install manifests as one YAML stream: `gapless k8s manifests | kubectl apply -f -`."
    "\n\n"
    "The CRDs rollouts.gapless.dev and analysistemplates.gapless.dev, the operator's namespace, its "
    "ServiceAccount with a ClusterRole that lists only the verbs the operator uses (and a Role for its "
    "leader-election Lease), and the operator Deployment (one replica, --leader-elect). Without options "
    "the output is deploy/kubernetes/ file by file, comments included."
)


@k8s_app.command("manifests", help=_MANIFESTS_HELP)
def manifests(
    namespace: Annotated[
        str,
        typer.Option(
            "-n",
            "--namespace",
            help="namespace of the operator (its ServiceAccount, Deployment and Lease); created by the output",
        ),
    ] = DEFAULT_NAMESPACE,
    image: Annotated[
        str,
        typer.Option(
            "--image",
            help="the operator image (none is published: build it from deploy/docker/Dockerfile)",
        ),
    ] = DEFAULT_IMAGE,
) -> None:
    """Print the install manifests as one YAML stream (help: ``_MANIFESTS_HELP``)."""
    try:
        text = render(namespace, image)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(text, nl=False)
