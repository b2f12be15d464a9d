"""Sharded dataset jobs on Ray: `plait.map(..., executor="ray", workers=N)`.

One controller (the caller's process, the job's run owner) cuts the source into
shard descriptors and hands them pull-style to async worker actors; each worker
runs the row runner over its shard, calls the model servers itself and journals
itself under the shard's lease. Ray is imported only when a job asks for it.
"""

from plait.data._ray._cluster import RayClusterError
from plait.data._ray._controller import Controller, Plan
from plait.data._ray._plan import Shard, shard_lease_id, split

__all__ = ["Controller", "Plan", "RayClusterError", "Shard", "shard_lease_id", "split"]
