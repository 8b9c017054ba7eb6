from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def pytest_configure(config: pytest.Config) -> None:
    # scripts/test runs the router's tests again on the build compiled with mypyc (its directory first
    # on PYTHONPATH); that run must import the compiled modules, or it would check nothing new.
    if os.environ.get("PHALANX_EXPECT_COMPILED") == "1":
        for name in ("phalanx.router.server", "phalanx.router.front", "phalanx.http.guard"):
            path = importlib.import_module(name).__file__ or ""
            if not path.endswith(".so"):
                raise pytest.UsageError(f"PHALANX_EXPECT_COMPILED=1 but {name} was imported from {path}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PHALANX_EXPECT_COMPILED") != "1":
        return
    skip = pytest.mark.skip(reason="pure_python: compiled code does not see the test's stand-in")
    for item in items:
        if item.get_closest_marker("pure_python"):
            item.add_marker(skip)


def minimal_serving() -> dict[str, Any]:
    """A small valid ModelServing as plain data; tests change one field to break one rule."""
    return {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "ModelServing",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "template": {
                "roles": [
                    {
                        "name": "decode",
                        "replicas": 2,
                        "workerReplicas": 1,
                        "entryTemplate": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "engine",
                                        "image": "vllm/vllm-openai:v0.11.1",
                                        "ports": [{"containerPort": 8000}],
                                        "resources": {"limits": {"nvidia.com/gpu": "8"}},
                                    }
                                ]
                            }
                        },
                        "workerTemplate": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "engine",
                                        "image": "vllm/vllm-openai:v0.11.1",
                                        "resources": {"limits": {"nvidia.com/gpu": "8"}},
                                    }
                                ]
                            }
                        },
                    }
                ]
            },
        },
    }


@pytest.fixture
def serving() -> Callable[[], dict[str, Any]]:
    return lambda: copy.deepcopy(minimal_serving())
