"""Ray at the edge: importing it, reaching a cluster, placing and ending workers.

Ray is an optional extra, imported only here and only when a job asks for it.
The controller connects as a driver (`ray.init(address=...)`, not Ray Client,
which is ~8x slower per call). Workers are async actors with Ray's retries off
(`max_restarts=0`, `max_task_retries=0`): a lost worker is plait's to handle,
by re-assigning its shard under a new lease epoch. Only the actors a job
created are ever ended, by their handles; never a Ray process it did not start.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from plait.data._ray._worker import ShardSummary, ShardTask, WorkerState, run_shard
from plait.executors._ray import RayClusterError, probe
from plait.executors._ray import connect as _connect
from plait.executors._ray import import_ray as _import_ray

__all__ = ["RayClusterError", "ShardWorker", "connect", "import_ray", "local_ips", "node_ips",
           "preflight", "sqlite_refusal", "start_worker"]


def import_ray() -> Any:
    return _import_ray("a job with executor='ray' (Ray)")


def connect(address: str | None) -> tuple[Any, bool]:
    """Connected as a driver, workers' logs kept out of the job's progress display."""
    return _connect(address, log_to_driver=False)


def preflight(address: str | None) -> None:
    """Before a job opens anything: Ray is installed, and a cluster named by address
    answers (the errors name the extra, or the address)."""
    ray = import_ray()
    address = address or os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized() and address is not None:
        probe(address)


def node_ips(ray: Any) -> list[str]:
    """The addresses of the cluster's live nodes."""
    return sorted({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")})


def local_ips() -> set[str]:
    ips = {"127.0.0.1", "::1"}
    try:
        ips.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None))
    except OSError:
        pass
    return ips


def sqlite_refusal(ips: list[str], here: set[str]) -> str | None:
    """Why a SQLite journal cannot serve workers on these nodes, or None.

    SQLite is one file with locks on one host's filesystem (on a shared
    filesystem its locks are not safe): every worker must run on this host."""
    away = [ip for ip in ips if ip not in here]
    if not away:
        return None
    return (f"a SQLite journal is one file on this host, and the Ray cluster has nodes on "
            f"other hosts ({', '.join(away[:3])}): workers there cannot journal to it. Use "
            "a PostgreSQL journal (journal='postgresql://...'), which every worker reaches")


class ShardWorker:
    """The actor: hosts one `WorkerState` and runs one shard at a time (concurrency
    inside a shard is the row runner's window, on the actor's event loop)."""

    def __init__(self, model: str | None, share: dict[str, Any], env: dict[str, str]) -> None:
        # The controller's settings for the model servers, before the model's client
        # reads them. Set here, not as a Ray runtime_env: a worker with a runtime_env
        # of its own cannot be one Ray started ahead, and takes a second longer.
        os.environ.update(env)
        self.state = WorkerState(model)
        self.state.set_limits(share)

    async def run_shard(self, task: ShardTask) -> ShardSummary:
        return await run_shard(task, self.state)

    async def set_limits(self, share: dict[str, Any]) -> None:
        self.state.set_limits(share)

    async def where(self) -> tuple[int, str]:
        """This worker's process id and Ray node id (tests kill it by its pid)."""
        import ray

        return os.getpid(), ray.get_runtime_context().get_node_id()


def start_worker(ray: Any, model: str | None, share: dict[str, Any],
                 env: dict[str, str]) -> Any:
    options: dict[str, Any] = {
        "max_restarts": 0, "max_task_retries": 0,
        # No CPU held: a worker mostly waits on HTTP; SPREAD puts one per node first.
        "num_cpus": 0, "scheduling_strategy": "SPREAD",
        # A few calls at once: one run_shard, plus set_limits/where beside it.
        "max_concurrency": 8,
    }
    global _ACTOR
    if _ACTOR is None or _ACTOR[0] is not ray:
        _ACTOR = (ray, ray.remote(ShardWorker))  # the class is exported once per process
    return _ACTOR[1].options(**options).remote(model, share, env)


_ACTOR: tuple[Any, Any] | None = None
