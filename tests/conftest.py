from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


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
