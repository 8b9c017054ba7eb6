"""`phalanx router` as a user runs it, when it cannot start; and its read-only endpoint listing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from phalanx.router import Endpoint, Router
from phalanx.router.main import RouterOptions


def phalanx_router(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx", "router", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kubeconfig(path: Path) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(json.dumps(config))
    return path


def test_help_names_every_option() -> None:
    result = phalanx_router("--help")
    assert result.returncode == 0
    for option in (
        "--kubeconfig",
        "--namespace",
        "-n",
        "--host",
        "--port",
        "--prefill-timeout",
        "--prefill-from",
    ):
        assert option in result.stdout


def test_a_missing_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    result = phalanx_router("--kubeconfig", str(tmp_path / "nope"), "--port", "0")
    assert result.returncode == 1
    assert "error: no cluster configuration" in result.stderr
    assert "--kubeconfig" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_malformed_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "config"
    bad.write_text("clusters: [unclosed")
    result = phalanx_router("--kubeconfig", str(bad), "--port", "0")
    assert result.returncode == 1
    assert "error: no cluster configuration" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = phalanx_router(
            "--kubeconfig", str(kubeconfig(tmp_path / "config")), "--host", "127.0.0.1", "--port", str(port)
        )
    assert result.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_missing_api_keys_file_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "keys.txt"
    result = phalanx_router("--api-keys", str(missing), "--backend", "http://127.0.0.1:1", "--port", "0")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"error: --api-keys: {missing}: cannot read the API keys: No such file or directory"
    )
    assert "Traceback" not in result.stderr + result.stdout


def test_an_empty_hold_model_is_one_line_naming_the_option() -> None:
    result = phalanx_router("--hold-model", " ", "--backend", "http://127.0.0.1:1", "--port", "0")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --hold-model: a model name may not be empty"
    assert "--hold-model" in phalanx_router("--help").stdout


def test_it_listens_on_loopback_unless_told_otherwise() -> None:
    # Nothing but this machine can reach a router started without --host; the Kubernetes manifests
    # pass --host 0.0.0.0 (tests/unit/operator/test_install.py).
    result = phalanx_router("--help")
    assert "127.0.0.1" in result.stdout
    assert RouterOptions().host == "127.0.0.1"


async def test_debug_endpoints_lists_what_discovery_pushed_in() -> None:
    router = Router()
    router.set_endpoints(
        [
            Endpoint("ns/a-0", "http://10.0.0.1:8000", "a", 0, models=("m",)),
            Endpoint("ns/a-1", "http://10.0.0.2:8000", "a", 1, ready=True, draining=True),
            Endpoint(
                "ns/b-0",
                "http://10.0.0.3:8000",
                "b",
                0,
                models=("m",),
                pd_role="prefill",
                pd_protocol="sglang",
                pd_pair_key="b-0",
                bootstrap_port=8998,
            ),
        ]
    )
    async with TestClient(TestServer(router.build_app())) as client:
        resp = await client.get("/debug/endpoints")
        assert resp.status == 200
        body = await resp.json()
        post = await client.post("/debug/endpoints")
        assert post.status == 405
    assert body == {
        "endpoints": [
            {
                "name": "ns/a-0",
                "url": "http://10.0.0.1:8000",
                "serving": "a",
                "group_index": 0,
                "models": ["m"],
                "ready": True,
                "draining": False,
                "routable": True,
                "in_flight": 0,
                "pd_role": None,
                "pd_protocol": None,
                "pd_pair_key": None,
                "bootstrap_port": None,
            },
            {
                "name": "ns/a-1",
                "url": "http://10.0.0.2:8000",
                "serving": "a",
                "group_index": 1,
                "models": [],
                "ready": True,
                "draining": True,
                "routable": False,
                "in_flight": 0,
                "pd_role": None,
                "pd_protocol": None,
                "pd_pair_key": None,
                "bootstrap_port": None,
            },
            {
                "name": "ns/b-0",
                "url": "http://10.0.0.3:8000",
                "serving": "b",
                "group_index": 0,
                "models": ["m"],
                "ready": True,
                "draining": False,
                "routable": True,
                "in_flight": 0,
                "pd_role": "prefill",
                "pd_protocol": "sglang",
                "pd_pair_key": "b-0",
                "bootstrap_port": 8998,
            },
        ]
    }
