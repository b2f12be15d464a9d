"""docs/ray.md's examples, run as tests/test_docs.py runs every page's (each block
a script in a temp dir), but against the session's Ray cluster (RAY_ADDRESS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ray.conftest import RayCluster
from tests.test_docs import ROOT, blocks

PAGE = ROOT / "docs" / "ray.md"


@pytest.mark.parametrize(("where", "code"), blocks([PAGE]), ids=[w for w, _ in blocks([PAGE])])
def test_ray_doc_block_runs(where: str, code: str, tmp_path: Path,
                            ray_cluster: RayCluster) -> None:
    script = tmp_path / "block.py"
    script.write_text(code)
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                         if p)}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr[-3000:]}"
