"""Fixtures of the config tests: a local stack rendered (not started) on non-default ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.cluster import Cluster
from tests.stack.stack_configs import make_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    cluster = make_cluster(tmp_path / "run")
    cluster.render(start_redis=True)
    return cluster
