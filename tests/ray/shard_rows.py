"""What the sharded-job tests run on Ray workers (an importable module: workers
import it by name), and the controller child that a test SIGKILLs.

    python tests/ray/shard_rows.py ADDRESS JOURNAL RUN_ID SOURCE OUT WORKERS

The pipeline: per row, two LLM calls to the test's sim-server (`OPENAI_BASE_URL`),
30% of the rows dropped after the first. Each prompt names its row, so the server's
log of prompts tells which calls were paid twice.
"""

from __future__ import annotations

if __name__ == "__main__":
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[2]))
    from tests.ray import shard_rows as _module

    _sys.exit(_module.main())

import json
import sys
import threading
from pathlib import Path
from typing import Any

import plait

MODEL = "openai:sim,stream=false,max_concurrency=24"


def dropped(i: int) -> bool:
    return i % 10 < 3


@plait.workflow
async def pipeline(row: dict) -> Any:
    draft = await plait.generate(f"gen {row['id']}", name="gen", max_tokens=8)
    if dropped(row["id"]):
        return plait.DROP
    verdict = await plait.generate(f"judge {row['id']} {draft}", name="judge", max_tokens=8)
    return {"id": row["id"], "verdict": verdict}


@plait.workflow
async def fails_at_13(row: dict) -> Any:
    if row["id"] == 13:
        raise ValueError("row 13 is bad")
    return {"id": row["id"]}


def write_source(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(n)))
    return path


def expected_ids(n: int) -> list[int]:
    return [i for i in range(n) if not dropped(i)]


class Asked:
    """The sim-server's script: answers, and logs every prompt it is asked (the
    ground truth of what was paid, apart from the journal)."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, messages: Any, role: str) -> str:
        text = messages[-1].content
        with self._lock:
            self.prompts.append(text)
        return f"r[{text.split(' ', 2)[1]}]"

    def count(self) -> int:
        with self._lock:
            return len(self.prompts)

    def repaid(self) -> int:
        with self._lock:
            return len(self.prompts) - len(set(self.prompts))


def main() -> int:
    address, journal, run_id, source, out, workers = sys.argv[1:7]
    import ray

    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    print("READY", flush=True)
    result = plait.map(pipeline, source, key="id", out=out, journal=journal, run_id=run_id,
                       executor="ray", workers=int(workers), shard_rows=40, window=8,
                       model=MODEL)
    print("DONE", result.rows_done, flush=True)
    return 0
