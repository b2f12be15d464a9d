"""What an `openai:` model costs per question before its first byte: the HTTP client.

    python benchmarks/llm_clients.py [--concurrent 200] [--ttft 1.0]

1. Setup: the event loop blocked while an `OpenAILLM` gets its HTTP client on a
   fresh loop (what `plait.ask`, one `asyncio.run` per question, pays each time).
2. Concurrency: `--concurrent` questions at once on one loop (`aask`, model
   `openai:sim`), against `plait sim-server` in a subprocess (ttft `--ttft`, fast
   tokens): median and p95 latency. The ideal is about two ttfts (planner, joiner).

Targets (issue 9): setup <= 2 ms per question; p50 at 200 concurrent <= 1.5x the
ideal. Runs against whichever plait is on PYTHONPATH, so a before/after is two runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import plait
from plait.compiler import aask
from plait.llm import OpenAILLM


@plait.tool
def search(query: str) -> str:
    """Look a thing up."""
    return f"{query}: 8611 m"


def setup_cost(base_url: str, n: int = 30) -> float:
    """Median seconds of blocked loop to get a client, each on a fresh loop."""

    async def one() -> float:
        llm = OpenAILLM("sim", base_url=base_url)
        start = time.perf_counter()
        llm._client()
        took = time.perf_counter() - start
        await llm.aclose()
        return took

    return statistics.median(asyncio.run(one()) for _ in range(n))


async def concurrent(n: int) -> list[float]:
    async def one(i: int) -> float:
        start = time.perf_counter()
        await aask(f"How high is K2? ({i})", [search], model="openai:sim", timeout=120)
        return time.perf_counter() - start

    return sorted(await asyncio.gather(*(one(i) for i in range(n))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--ttft", type=float, default=1.0)
    args = parser.parse_args()
    script = [
        {"match": "Results:", "reply": json.dumps({"action": "finish", "answer": "8611 m"})},
        {"match": "Question:", "reply": '1. search("K2")\n2. join()'},
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.json"
        path.write_text(json.dumps(script))
        from tests._support import free_port

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-c", "from plait.cli import main; main()", "sim-server",
             "--script", str(path), "--ttft", str(args.ttft), "--tps", "5000",
             "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base_url}/models", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        sys.exit("sim-server did not start within 30 s")
                    time.sleep(0.2)
            os.environ["OPENAI_BASE_URL"] = base_url
            os.environ.pop("OPENAI_API_KEY", None)
            setup = setup_cost(base_url)
            print(f"plait from {Path(plait.__file__).parent}", flush=True)
            print(f"running {args.concurrent} concurrent questions...", flush=True)
            took = asyncio.run(concurrent(args.concurrent))
        finally:
            server.terminate()
            server.wait(10)
    ideal = 2 * args.ttft
    p50, p95 = statistics.median(took), took[int(0.95 * (len(took) - 1))]
    rows = [
        ("client setup per question", f"{setup * 1000:.1f} ms", "<= 2 ms", setup <= 0.002),
        (f"p50 at {args.concurrent} concurrent", f"{p50:.2f} s", f"<= {1.5 * ideal:.2f} s",
         p50 <= 1.5 * ideal),
        (f"p95 at {args.concurrent} concurrent", f"{p95:.2f} s", "", None),
    ]
    print(f"{'measure':<28} {'value':>10} {'target':>10}  result")
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("met" if ok else "MISSED")
        print(f"{name:<28} {value:>10} {target:>10}  {mark}")


if __name__ == "__main__":
    main()
