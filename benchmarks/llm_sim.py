"""How faithful the simulated model's timing is: configured vs measured.

For each (ttft, tps) setting and each way of reaching the simulation -- the
in-process `sim` backend, and the HTTP sim server (a separate process, as
`plait sim-server` runs) through the OpenAI-compatible backend -- it runs `--concurrency` simultaneous streams of `--tokens` tokens,
`--repeat` times, and prints the median measured time to first token and
tokens per second with their error against the configured value.

    python benchmarks/llm_sim.py [--repeat 5] [--tokens 60] [--concurrency 1 32]

Measured: ttft = call start -> first delta (client side);
tps = (completion_tokens - 1) / (total - ttft). Target (issue 3): within 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import httpx

from plait.llm import LLM, Message, OpenAILLM, SimLLM, Usage

SETTINGS = [(0.4, 60.0), (0.1, 200.0), (0.05, 1000.0)]
ASK = [Message("user", "benchmark")]


async def one_round(llm: LLM, concurrency: int) -> list[Usage]:
    streams = [llm.stream(ASK) for _ in range(concurrency)]

    async def drain(stream) -> None:  # type: ignore[no-untyped-def]
        async for _ in stream:
            pass

    await asyncio.gather(*(drain(s) for s in streams))
    return [s.usage for s in streams if s.usage is not None]


async def measure(llm: LLM, concurrency: int, repeat: int) -> tuple[float, float]:
    ttfts: list[float] = []
    rates: list[float] = []
    await one_round(llm, concurrency)  # warm up: open the pool's connections
    for _ in range(repeat):
        for u in await one_round(llm, concurrency):
            ttfts.append(u.ttft_s)
            rates.append((u.completion_tokens - 1) / (u.total_s - u.ttft_s))
    return statistics.median(ttfts), statistics.median(rates)


@contextlib.contextmanager
def sim_server_process(reply: str, ttft: float, tps: float) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import sys; from plait.llm._sim_server import serve; "
            "serve(sys.argv[1], ttft=float(sys.argv[2]), tps=float(sys.argv[3]), "
            "port=int(sys.argv[4]), log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code, reply, str(ttft), str(tps), str(port)])
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sim server did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def row(cells: Sequence[object], widths: Sequence[int]) -> str:
    return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))


async def main(repeat: int, tokens: int, concurrencies: Sequence[int]) -> None:
    reply = " ".join(["token"] * tokens)
    head = ["backend", "conc", "ttft cfg", "ttft med", "err", "tps cfg", "tps med", "err"]
    widths = [9, 5, 9, 9, 7, 8, 8, 7]
    print(row(head, widths))
    print(row(["-" * w for w in widths], widths))
    for ttft, tps in SETTINGS:
        with sim_server_process(reply, ttft, tps) as base_url:
            http = OpenAILLM("sim", base_url=base_url)
            backends: list[tuple[str, LLM]] = [("in-proc", SimLLM(reply, ttft=ttft, tps=tps)),
                                               ("http", http)]
            for name, llm in backends:
                for conc in concurrencies:
                    m_ttft, m_tps = await measure(llm, conc, repeat)
                    print(row([name, conc, f"{ttft:.3f}", f"{m_ttft:.4f}",
                               f"{(m_ttft - ttft) / ttft:+.1%}", f"{tps:.0f}", f"{m_tps:.1f}",
                               f"{(m_tps - tps) / tps:+.1%}"], widths))
            await http.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    asyncio.run(main(args.repeat, args.tokens, args.concurrency))
