"""An imported RayClusterFleet run by `phalanx up`: the pods KubeRay would build, really started.

`ray` is a stand-in program (it starts no Ray): `ray start --head` listens on the pod's address,
`ray start --address=H:P` connects to H:P and says so, `ray health-check` tries to connect. That is
enough to show that the imported commands and env work in a role instance: the worker's init
container waits for the head, the worker's `$KUBERAY_GEN_RAY_START_CMD` reaches the head of its own
group through `$(ENTRY_ADDRESS)`, and the router serves through the head's serving port.
"""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import openai
import pytest

from tests.component.embedded.harness import running_up
from tests.unit.importers.helpers import phalanx_import

pytestmark = pytest.mark.component

RAY = """#!{python}
import os, socket, sys, time

args = sys.argv[1:]


def address():  # --address=H:P (ray start) or --address H:P (ray health-check)
    at = next(i for i, a in enumerate(args) if a.startswith("--address"))
    value = args[at].split("=", 1)[1] if "=" in args[at] else args[at + 1]
    host, port = value.rsplit(":", 1)
    return host, int(port)


if args[:1] == ["health-check"]:
    try:
        socket.create_connection(address(), timeout=1).close()
    except OSError:
        sys.exit(1)
    sys.exit(0)
if args[:2] == ["start", "--head"]:
    port = next((int(a.split("=")[1]) for a in args if a.startswith("--port=")), 6379)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((os.environ["POD_IP"], port))
    server.listen()
    print("head listening on", os.environ["POD_IP"], port, " ".join(args), flush=True)
    if "--block" not in args and os.fork():
        sys.exit(0)  # without --block, `ray start` returns and the head keeps running
    while True:
        conn, peer = server.accept()
        name = conn.recv(200).decode()
        if name:
            print("joined by", name, "from", peer[0], flush=True)
        conn.close()
if args[:1] == ["start"]:
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = socket.create_connection(address(), timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    conn.sendall(os.environ["RAY_CLOUD_INSTANCE_ID"].encode())
    conn.close()
    print("joined", "%s:%d" % address(), flush=True)
    while "--block" in args:
        time.sleep(60)
"""

FLEET = """
apiVersion: orchestration.aibrix.ai/v1alpha1
kind: RayClusterFleet
metadata:
  name: tiny-ray
spec:
  replicas: 2
  selector: {matchLabels: {model.aibrix.ai/name: tiny-ray}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {model.aibrix.ai/name: tiny-ray}
      annotations: {ray.io/overwrite-container-cmd: "true"}
    spec:
      headGroupSpec:
        rayStartParams: {dashboard-host: "0.0.0.0", block: "false"}
        template:
          metadata:
            labels: {model.aibrix.ai/name: tiny-ray}
          spec:
            terminationGracePeriodSeconds: 5
            containers:
            - name: ray-head
              image: vllm/vllm-openai:v0.9.0
              command: [/bin/bash, -lc, --]
              # GROUP_SIZE=1: the simulator serves alone (its workers here run the stand-in Ray).
              args: ["$KUBERAY_GEN_RAY_START_CMD; GROUP_SIZE=1 exec phalanx sim --served-model-name tiny-ray
                --port 8000"]
              env: [{name: HOME, value: "{home}"}]
              ports:
              - {containerPort: 6379, name: gcs-server}
              - {containerPort: 8000, name: service}
              readinessProbe:
                httpGet: {path: /health, port: service}
                periodSeconds: 1
      workerGroupSpecs:
      - groupName: workers
        replicas: 1
        minReplicas: 1
        maxReplicas: 1
        rayStartParams: {}
        template:
          spec:
            terminationGracePeriodSeconds: 5
            containers:
            - name: ray-worker
              image: vllm/vllm-openai:v0.9.0
              command: [/bin/bash, -lc, --]
              args: ["$KUBERAY_GEN_RAY_START_CMD"]
              env: [{name: HOME, value: "{home}"}]
"""


def _stand_in_ray(tmp_path: Path) -> Path:
    """A home whose login profile puts the stand-in `ray` and this `phalanx` first on PATH.

    KubeRay's commands run in a login shell (`bash -lc`), which resets PATH from /etc/profile.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ray = bin_dir / "ray"
    ray.write_text(RAY.replace("{python}", sys.executable))
    ray.chmod(ray.stat().st_mode | stat.S_IXUSR)
    home = tmp_path / "home"
    home.mkdir()
    venv_bin = Path(sys.executable).parent
    (home / ".bash_profile").write_text(f'export PATH="{bin_dir}:{venv_bin}:$PATH"\n')
    return home


def _log(state: Path, pod: str, container: str) -> str:
    path = state / "logs" / pod / f"{container}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def test_an_imported_fleet_runs_one_ray_cluster_per_group(tmp_path: Path) -> None:
    home = _stand_in_ray(tmp_path)
    imported = phalanx_import(tmp_path, FLEET.replace("{home}", str(home)))
    assert imported.returncode == 0, imported.stderr
    spec = tmp_path / "imported.yaml"
    spec.write_text(imported.stdout)
    with running_up(tmp_path, spec) as up:
        up.wait_available("tiny-ray", timeout=120)
        pods = {pod["name"]: pod for pod in up.status()["pods"]}
        for group in (0, 1):
            head, worker = f"tiny-ray-{group}-ray-0-0", f"tiny-ray-{group}-ray-0-1"
            head_ip = pods[head]["ip"]
            deadline = time.monotonic() + 30
            while f"joined by {worker} from" not in _log(up.state_dir, head, "ray-head"):
                assert time.monotonic() < deadline, _log(up.state_dir, head, "ray-head")
                time.sleep(0.2)
            # The worker reached the head of its own group, at the port KubeRay's command names.
            assert f"joined {head_ip}:6379" in _log(up.state_dir, worker, "ray-worker")
            # Its init container polled that same address until the head answered.
            waited = _log(up.state_dir, worker, "wait-gcs-ready").splitlines()
            assert set(waited) <= {f"waiting for the GCS of the Ray head at {head_ip}:6379"}
            # block: 'false' is kept on the head (AIBrix's KubeRay), so the engine runs after ray start.
            head_log = _log(up.state_dir, head, "ray-head")
            assert "--block" not in head_log.splitlines()[0]
        api = openai.OpenAI(base_url=up.base_url, api_key="unused", max_retries=0, timeout=30)
        reply = api.chat.completions.create(
            model="tiny-ray", messages=[{"role": "user", "content": "Hello"}], max_tokens=4
        )
        assert reply.choices[0].message.content
        assert up.stop() == 0
        assert up.leftovers() == []
