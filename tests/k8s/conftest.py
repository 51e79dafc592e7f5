"""A real Kubernetes control plane for the tests of this directory (one per test process, started on first use)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import in_ci
from tests.k8s.cluster import Cluster, k8s_bin_dir, missing_binaries


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """etcd, kube-apiserver, controller-manager, scheduler and kwok on loopback; skipped (failed under CI) without the binaries."""
    missing = missing_binaries()
    if missing:
        message = f"Kubernetes binaries missing in {k8s_bin_dir()}: {', '.join(missing)} (build them with ./dev k8s-bin)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    with Cluster() as c:
        yield c
