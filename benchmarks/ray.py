"""Ray figures (issue 14), each against a baseline measured in the same run.

Sections (run all, or some with --only NAME[,NAME]):

* remote-tool: a remote-tool node (`executor="ray"`, a no-op sync tool, one call
  after another in one run) against a bare Ray task round trip (`await
  f.remote()` of the same no-op, same options), interleaved, median of --repeat
  samples of --calls calls each. Target: plait <= 1.2x the bare round trip and
  <= 20 us more per call. The driver's CPU per call is shown too.
* cpu-scaling: a CPU-bound tool (`resources={"CPU": 1}`, ~40 ms of pure Python per
  call) fanned out --tasks times, on 1, 2 and 3 raylets of one CPU each (nodes added
  to one cluster). Reported, no target: on a 2-core machine 3 raylets cannot beat 2.
* sharded: benchmarks/ray_shards.py, run after the sections above have ended their
  cluster (it starts its own): a sharded dataset job on 3 raylets against the sim
  server's ceiling, hand-written asyncio and the local executor, and the
  controller's CPU per row.

The cluster is started here (`ray.cluster_utils.Cluster` on 127.0.0.1, one CPU and
80 MB of object store per raylet) and ended here; nothing else is touched.

    python benchmarks/ray.py [--only remote-tool,cpu-scaling] [--quick]
"""

from __future__ import annotations

import os
import sys

# This file is named ray.py: run as a script, its folder comes first on sys.path and
# would shadow the `ray` package. The benchmarks import nothing from their folder.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

# Everything on 127.0.0.1 (see tests/ray/conftest.py); read when Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import plait  # noqa: E402

OBJECT_STORE = 80 * 1024 * 1024


@dataclass
class Row:
    section: str
    figure: str
    value: str
    target: str = ""
    met: bool | None = None  # None: reported, no target


# ---------------------------------------------------------------- the cluster


class Bench:
    """The cluster the sections share: a head, more raylets added on demand."""

    def __init__(self) -> None:
        local = {"node_ip_address": "127.0.0.1", "object_store_memory": OBJECT_STORE}
        self.local = local
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, **local})
        self.added: list[Any] = []
        ray.init(address=self.cluster.address, log_to_driver=False)

    def raylets(self, n: int) -> None:
        while 1 + len(self.added) < n:
            self.added.append(self.cluster.add_node(num_cpus=1, **self.local))
        self.cluster.wait_for_nodes()

    def close(self) -> None:
        ray.shutdown()
        self.cluster.shutdown()


# ---------------------------------------------------------------- remote-tool


@plait.tool
def noop(i: int) -> int:
    """Returns i."""
    return i


def bare_noop(i: int) -> int:
    return i


def remote_tool(bench: Bench, args: argparse.Namespace) -> list[Row]:
    bench.raylets(1)
    calls = args.calls
    bare = ray.remote(max_retries=0, retry_exceptions=False)(bare_noop)

    @plait.workflow
    async def chain(n: int) -> int:
        total = 0
        for i in range(n):
            total += await noop(i)
        return total

    async def bare_chain(n: int) -> int:
        total = 0
        for i in range(n):
            total += await bare.remote(i)
        return total

    def timed(fn: Callable[[], Any]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return (time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6

    def plait_sample() -> tuple[float, float]:
        return timed(lambda: plait.run(chain, calls, executor="ray"))

    def bare_sample() -> tuple[float, float]:
        return timed(lambda: asyncio.run(bare_chain(calls)))

    plait_sample(), bare_sample()  # warm: workers started, functions exported
    mine, base = [], []
    for _ in range(args.repeat):
        base.append(bare_sample())
        mine.append(plait_sample())
    p_wall = statistics.median(w for w, _ in mine)
    b_wall = statistics.median(w for w, _ in base)
    p_cpu = statistics.median(c for _, c in mine)
    b_cpu = statistics.median(c for _, c in base)
    ratio, extra = p_wall / b_wall, p_wall - b_wall
    return [
        Row("remote-tool", "bare Ray task round trip, us/call", f"{b_wall:.0f}"),
        Row("remote-tool", "remote-tool node round trip, us/call", f"{p_wall:.0f}"),
        Row("remote-tool", "ratio plait / bare", f"{ratio:.2f}x", "<= 1.2x", ratio <= 1.2),
        Row("remote-tool", "plait - bare, us/call", f"{extra:+.0f}", "<= +20 us", extra <= 20),
        Row("remote-tool", "driver CPU us/call, bare / plait", f"{b_cpu:.0f} / {p_cpu:.0f}"),
    ]


# ---------------------------------------------------------------- cpu-scaling

WORK = 400_000  # loop steps per call: ~40 ms of pure Python on this machine


@plait.tool(resources={"CPU": 1})
def burn(i: int) -> int:
    """CPU-bound: a pure-Python loop."""
    total = 0
    for k in range(WORK):
        total += k ^ i
    return total


@plait.workflow
async def fan(n: int) -> int:
    refs = [burn(i) for i in range(n)]
    return sum([await r for r in refs])


def cpu_scaling(bench: Bench, args: argparse.Namespace) -> list[Row]:
    rows = []
    first = None
    for n in (1, 2, 3):
        bench.raylets(n)
        plait.run(fan, 2 * n)  # a warm worker on every raylet
        samples = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            plait.run(fan, args.tasks)
            samples.append(args.tasks / (time.perf_counter() - t))
        rate = statistics.median(samples)
        first = first or rate
        rows.append(Row("cpu-scaling", f"{n} raylet{'s' if n > 1 else ''}: calls/s",
                        f"{rate:.1f} ({rate / first:.2f}x of 1)"))
    cores = os.cpu_count() or 1
    rows.append(Row("cpu-scaling", "cores on this machine", str(cores),
                    "" if cores > 2 else "3 raylets cannot beat 2 on 2 cores"))
    return rows


SECTIONS: dict[str, Callable[[Bench, argparse.Namespace], list[Row]]] = {
    "remote-tool": remote_tool,
    "cpu-scaling": cpu_scaling,
}


def table(rows: list[Row]) -> str:
    head = ("section", "figure", "value", "target", "met")
    cells = [head] + [(r.section, r.figure, r.value, r.target,
                       "" if r.met is None else "met" if r.met else "MISSED") for r in rows]
    widths = [max(len(c[k]) for c in cells) for k in range(len(head))]
    lines = ["  ".join(c[k].ljust(widths[k]) for k in range(len(head))).rstrip()
             for c in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join([*SECTIONS, "sharded"]),
                        help=f"sections, comma-separated: {', '.join(SECTIONS)}, sharded")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300, help="remote-tool calls per sample")
    parser.add_argument("--tasks", type=int, default=24, help="cpu-scaling calls per sample")
    parser.add_argument("--quick", action="store_true", help="fewer samples and calls")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.calls, args.tasks = 3, 100, 12
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    sharded = "sharded" in chosen
    chosen = [s for s in chosen if s != "sharded"]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    bench = Bench()
    rows: list[Row] = []
    try:
        for name in chosen:
            rows += SECTIONS[name](bench, args)
    finally:
        bench.close()
    print(f"load average before the run: {load}; {os.cpu_count()} cores")
    if rows:
        print(table(rows))
    if sharded:  # its own cluster and sim server, started and ended by it
        sys.stdout.flush()
        shards = os.path.join(_HERE, "ray_shards.py")
        subprocess.run([sys.executable, shards, *(["--quick"] if args.quick else [])],
                       check=True, timeout=1800)


if __name__ == "__main__":
    main()
