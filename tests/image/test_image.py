"""The container image, built by scripts/build-image.sh and run with buildah (chroot isolation, the
host's loopback): `phalanx` answers as the non-root user the chart's pods need, the simulator serves
/health and a completion through the router, and a spec is checked against the one Kubernetes
schema the image keeps.

Skipped, with the reason, where buildah or gcc is absent and the build script cannot install it. The build
reuses the image while nothing it is made of changed, so only the first run pays for it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx import __version__
from phalanx.operator.install import RUN_AS_USER, InstallOptions
from tests.component.sim.conftest import HOST, free_port, get, wait_health
from tests.conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.image

BUILD_TIMEOUT = 1200.0  # s; a cold build here (tools, Debian base, wheels, image) is about 2 minutes
STEP_TIMEOUT = 60.0


def _cannot_build() -> str | None:
    if sys.platform != "linux":
        return "the image smoke test needs Linux (buildah)"
    missing = [tool for tool in ("buildah", "gcc") if not shutil.which(tool)]
    if not missing or (os.geteuid() == 0 and shutil.which("apt-get")):
        return None
    return (
        f"the image smoke test did not run: {' and '.join(missing)} not installed, and "
        "scripts/build-image.sh can install them only as root with apt-get; install them to run it"
    )


def _buildah(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", *args], input=stdin, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The ID of the image the build script made (or found up to date)."""
    reason = _cannot_build()
    if reason:
        pytest.skip(reason)
    iidfile = tmp_path_factory.mktemp("image") / "iid"
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh"), "--iidfile", str(iidfile)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert built.returncode == 0, f"scripts/build-image.sh failed:\n{built.stdout}\n{built.stderr}"
    return iidfile.read_text().strip()


@pytest.fixture
def container(image: str) -> Iterator[str]:
    made = _buildah("from", "--pull=never", image)
    assert made.returncode == 0, made.stderr
    name = made.stdout.strip()
    try:
        yield name
    finally:
        _buildah("rm", name)


def run_in(container: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return _buildah("run", "--isolation", "chroot", container, "--", *argv)


def test_the_default_image_of_the_chart_names_the_built_image(image: str) -> None:
    default = InstallOptions().image
    assert default == f"phalanx:{__version__}"
    found = _buildah("images", "--noheading", "--no-trunc", "--format", "{{.ID}}", default)
    assert found.stdout.strip().removeprefix("sha256:") == image


def test_the_image_runs_phalanx_as_the_charts_non_root_user(image: str) -> None:
    config = json.loads(_buildah("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]
    assert config["Entrypoint"] == ["phalanx"]
    assert config["User"] == f"{RUN_AS_USER}:{RUN_AS_USER}"
    assert config["Labels"]["org.opencontainers.image.version"] == __version__


def test_phalanx_answers_its_version_as_uid_65532(container: str) -> None:
    version = run_in(container, "phalanx", "--version")
    assert (version.returncode, version.stdout.strip()) == (0, __version__), version.stderr
    ids = run_in(container, "python3", "-c", "import os; print(os.getuid(), os.getgid())")
    assert ids.stdout.split() == [str(RUN_AS_USER)] * 2, ids.stdout + ids.stderr


def test_the_routers_request_path_in_the_image_is_compiled(container: str) -> None:
    # scripts/build-image.sh builds the wheel with PHALANX_COMPILE=1 (setup.py): C extensions by mypyc.
    probe = "import phalanx.router.server as s, phalanx.http.guard as g; print(s.__file__, g.__file__)"
    found = run_in(container, "python3", "-c", probe)
    paths = found.stdout.split()
    assert found.returncode == 0 and len(paths) == 2, found.stdout + found.stderr
    assert all(path.endswith(".so") for path in paths), paths


def test_the_operator_in_the_image_starts_and_looks_for_its_cluster(container: str) -> None:
    operator = run_in(container, "phalanx", "operator", "--kubeconfig", "/nonexistent")
    assert operator.returncode != 0
    assert "no cluster configuration (Configuration file /nonexistent not found)" in operator.stderr


def test_a_spec_is_checked_against_the_kubernetes_schema_kept_in_the_image(
    container: str, tmp_path: Path
) -> None:
    good = (EXAMPLES / "quickstart.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.replace("containerPort:", "containerPortt:", 1))
    for source, target in ((EXAMPLES / "quickstart.yaml", "good.yaml"), (bad, "bad.yaml")):
        copied = _buildah("copy", "--quiet", container, str(source), f"/home/phalanx/{target}")
        assert copied.returncode == 0, copied.stderr
    valid = run_in(container, "phalanx", "validate", "-f", "good.yaml")
    assert valid.returncode == 0, valid.stdout + valid.stderr
    invalid = run_in(container, "phalanx", "validate", "-f", "bad.yaml")
    assert invalid.returncode == 1
    # The suggestion comes from the PodSpec schema: it is there and read.
    assert "unknown field 'containerPortt'; fix: did you mean 'containerPort'?" in invalid.stderr


def test_the_simulator_and_the_router_in_the_image_serve_a_completion_on_loopback(
    container: str, tmp_path: Path
) -> None:
    sim_port, router_port = free_port(), free_port()
    sim = ["phalanx", "sim", "--served-model-name", "tiny", "--host", HOST, "--port", str(sim_port)]
    router = ["phalanx", "router", "--host", HOST, "--port", str(router_port)]
    router += ["--backend", f"http://{HOST}:{sim_port}"]
    with _serving(container, sim, tmp_path / "sim.log"):
        # The router starts once the simulator answers: a router that cannot reach its backend
        # yet answers 503 until it learns the backend's models (by design), which is not this test.
        wait_health(sim_port, 200, timeout=STEP_TIMEOUT)
        with _serving(container, router, tmp_path / "router.log"):
            wait_health(router_port, 200, timeout=STEP_TIMEOUT)
            _wait_model(router_port, "tiny")
            status, body = _complete(router_port)
            assert status == 200, body
            assert json.loads(body)["choices"][0]["text"]
    for port in (sim_port, router_port):
        with pytest.raises(OSError):
            get(port, "/health", timeout=1.0)


@contextlib.contextmanager
def _serving(container: str, argv: list[str], log: Path) -> Iterator[None]:
    """`argv` running in the container until the block ends; its log is shown if the block fails."""
    with log.open("wb") as out:
        # A session of its own: what buildah leaves running is stopped with the whole group.
        proc = subprocess.Popen(
            ["buildah", "run", "--isolation", "chroot", container, "--", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n{argv[1]}'s log:\n{log.read_text(errors='replace')}") from None
    finally:
        _stop(proc)


def _wait_model(port: int, model: str) -> None:
    """Until the router lists `model` in GET /v1/models."""
    deadline = time.monotonic() + STEP_TIMEOUT
    listed: list[str] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            status, body = get(port, "/v1/models", timeout=1.0)
            listed = [m["id"] for m in json.loads(body)["data"]] if status == 200 else []
            if model in listed:
                return
        time.sleep(0.2)
    raise AssertionError(f"the router never listed {model!r} (last: {listed})")


def _complete(port: int) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=STEP_TIMEOUT)
    try:
        body = json.dumps({"model": "tiny", "prompt": "Hello", "max_tokens": 4})
        conn.request("POST", "/v1/completions", body, {"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()  # buildah passes it on to the engine
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    # Whatever is left of the session (buildah's helpers, the engine) goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=15)
