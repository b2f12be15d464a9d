"""A real Ray cluster on 127.0.0.1 for the tests of this folder, started once per session.

How to use it: ask for the `ray_cluster` fixture (session scope). It gives a
`RayCluster` with

- `cluster`: the `ray.cluster_utils.Cluster` itself (`add_node`, `remove_node` for a
  node lost mid-job; remove only nodes your test added, and never the head),
- `address`: what `ray.init(address=...)` / `RAY_ADDRESS` takes (a subprocess driver
  connects with it),
- `head`, `cpu_node`, `gpu_node`: the three node ids (`ray.get_runtime_context().
  get_node_id()` inside a task names one of them).

Three raylets, one CPU each: the head, a plain CPU node, and a node with a fake GPU
(`num_gpus=1`, scheduling only: no hardware needed). This process is connected as a
driver for the whole session (`ray.is_initialized()`), so a test may submit work
directly. Object stores are kept small (80 MB each) so three raylets fit on a small
machine. Teardown ends only what the fixture started (`ray.shutdown()`,
`Cluster.shutdown()`): never `ray stop`, which would end every Ray process on the
machine, other users' included.

Starting it costs a few seconds; keep tests that need their own cluster rare.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

OBJECT_STORE = 80 * 1024 * 1024  # bytes per node (Ray's minimum is 75 MB)


@dataclass(frozen=True)
class RayCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    address: str
    head: str
    cpu_node: str
    gpu_node: str


def _node_id(node: Any) -> str:
    return node.node_id if hasattr(node, "node_id") else node.unique_id


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    ray = pytest.importorskip("ray", reason="the Ray tests need plait[ray]")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # a Ray this session did not start: leave it alone
        pytest.fail("Ray is already initialised in the test process; the Ray tests "
                    "start their own cluster")
    # Workers start from the raylets' environment: they import plait and the test
    # modules from the same places as this process does.
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": OBJECT_STORE,
                        "include_dashboard": False},
    )
    try:
        cpu = cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        gpu = cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=OBJECT_STORE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        yield RayCluster(cluster, cluster.address, _node_id(cluster.head_node),
                         _node_id(cpu), _node_id(gpu))
    finally:
        ray.shutdown()
        cluster.shutdown()
