"""The executor contract on Ray: every call a Ray task on the session's cluster."""

from __future__ import annotations

from typing import Any

import pytest

from tests.executors.contract import ExecutorContract
from tests.ray.conftest import RayCluster


class TestRay(ExecutorContract):
    @pytest.fixture
    def executor(self, ray_cluster: RayCluster) -> Any:
        return "ray"
