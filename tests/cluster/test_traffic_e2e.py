"""Rollouts and scale-downs under real traffic on the real control plane: 0 failed requests.

The operator manages `phalanx sim` engines on process nodes; async `openai` clients stream through
`phalanx router` (Kubernetes discovery) with no retries, so any request cut by a drain that did not
wait, or routed to a pod on its way out, fails the test. Streams last a few seconds and the engines
stop at once on SIGTERM, so a drain that took an unknown in-flight count for 0 cuts them (checked: 7
failed streams in a rollout with that rule); the group status must also have reported the engines'
real count ("draining: N requests in flight", N > 0).
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx.kube.resources import ModelServingResource
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, operator_process, wait_for
from tests.cluster.load import StreamingLoad
from tests.cluster.procpods import ProcessKubelet, process_kubelet
from tests.cluster.routers import eventually, routable_in, router_process
from tests.cluster.servings import MODEL, available, merge_patch, pods_of, sim_serving, status_of

pytestmark = pytest.mark.cluster

GRACE = 30  # the entry's termination grace period: the operator's drain bound
MAX_TOKENS = 256  # about 3 s per stream at the simulator's default inter-token latency
CLIENTS = 6
DRAINING = re.compile(r"draining: (\d+) requests? in flight")


@pytest.fixture
def kubelet(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ProcessKubelet]:
    with process_kubelet(control_plane, tmp_path) as running:
        yield running


def containers(manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for role in manifest["spec"]["template"]["roles"]:
        for template in ("entryTemplate", "workerTemplate"):
            yield from role[template]["spec"]["containers"]


def serving(namespace: str, pool: str, replicas: int) -> dict[str, Any]:
    """`replicas` groups of sim engines, seed 0, whose drain bound is `GRACE`."""
    manifest = sim_serving(namespace, "chat", pool, replicas)
    for role in manifest["spec"]["template"]["roles"]:
        for template in ("entryTemplate", "workerTemplate"):
            role[template]["spec"]["terminationGracePeriodSeconds"] = GRACE
    for container in containers(manifest):
        # An engine that stops at once on SIGTERM: only the operator's drain keeps streams whole.
        container["args"] = [*container["args"], "--drain-timeout", "0", "--seed", "0"]
    return manifest


def new_revision(manifest: dict[str, Any]) -> dict[str, Any]:
    """A merge patch giving every engine `--seed 1`: a new revision (the patch replaces the roles list)."""
    changed = copy.deepcopy(manifest)
    for container in containers(changed):
        container["args"][-1] = "1"
    return {"spec": changed["spec"]}


def seeds(cp: ControlPlane, namespace: str) -> set[str]:
    """The `--seed` of every live pod's containers."""
    found: set[str] = set()
    for pod in pods_of(cp, namespace).values():
        assert pod.spec is not None
        for container in pod.spec.containers:
            args = list(container.args or [])
            found.add(args[args.index("--seed") + 1])
    return found


class DrainWatch:
    """Samples the group messages in the background: the in-flight counts the drains reported."""

    def __init__(self, cp: ControlPlane, namespace: str, name: str) -> None:
        self.cp, self.namespace, self.name = cp, namespace, name
        self.messages: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DrainWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def most_in_flight(self) -> int:
        counts = [int(m.group(1)) for m in map(DRAINING.search, self.messages) if m]
        return max(counts, default=-1)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                groups = status_of(self.cp, self.namespace, self.name).get("groups") or []
            except Exception:  # a transient API error: sample again
                continue
            self.messages.update(
                g.get("message") or "" for g in groups if "draining" in (g.get("message") or "")
            )


def start_serving(
    cp: ControlPlane, kubelet: ProcessKubelet, prefix: str, replicas: int
) -> tuple[str, dict[str, Any]]:
    install_crds(cp.client(), PHALANX_CRDS)
    namespace = cp.new_namespace(prefix)
    manifest = serving(namespace, kubelet.pool(namespace, replicas), replicas)
    cp.client().create(ModelServingResource.from_dict(manifest))
    return namespace, manifest


def entries(namespace: str, groups: int) -> set[str]:
    return {f"{namespace}/chat-{g}-sim-0-0" for g in range(groups)}


def serving_all(cp: ControlPlane, namespace: str, url: str) -> None:
    """Wait until the 3 groups are Available and the router routes to each entry."""
    wait_for("3 groups Available", lambda: available(cp, namespace, "chat", 3), timeout=90)
    eventually("3 entries routable", url, lambda eps: entries(namespace, 3) <= routable_in(eps), timeout=30)


def flowing(load: StreamingLoad) -> tuple[float, int]:
    """Wait until every client has finished a stream; the time and the count of successes then."""
    wait_for("traffic flowing", lambda: load.tally.succeeded >= CLIENTS, timeout=30)
    return time.monotonic(), load.tally.succeeded


@contextlib.contextmanager
def under_load(
    cp: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[tuple[StreamingLoad, DrainWatch]]:
    """The router and the operator running, the 3 groups serving, and streams flowing from every client."""
    with (
        router_process(cp.kubeconfig, [namespace], tmp_path) as (_, url),
        operator_process(cp, namespace, tmp_path),
    ):
        serving_all(cp, namespace, url)
        with streaming(url) as load, DrainWatch(cp, namespace, "chat") as watch:
            flowing(load)
            yield load, watch


def streaming(url: str) -> StreamingLoad:
    return StreamingLoad(url, MODEL, clients=CLIENTS, attempts=1, max_tokens=MAX_TOKENS)


def report(what: str, load: StreamingLoad, during: int, seconds: float, watch: DrainWatch) -> None:
    tally = load.tally
    print(
        f"{what}: {seconds:.1f} s, {tally.succeeded} streams succeeded ({during} during it), "
        f"{tally.failed} failed; drain messages: {sorted(watch.messages)}"
    )


def rolled_out(cp: ControlPlane, namespace: str) -> bool:
    status = status_of(cp, namespace, "chat")
    return (
        seeds(cp, namespace) == {"1"}
        and status.get("updatedReplicas") == 3
        and available(cp, namespace, "chat", 3)
    )


def test_a_rolling_update_under_streaming_load_fails_no_request(
    control_plane: ControlPlane, kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    cp = control_plane
    namespace, manifest = start_serving(cp, kubelet, "roll", 3)
    with under_load(cp, namespace, tmp_path) as (load, watch):
        began, served = time.monotonic(), load.tally.succeeded
        merge_patch(cp, namespace, "chat", new_revision(manifest))
        wait_for("every group on the new revision", lambda: rolled_out(cp, namespace), timeout=120)
        took, during = time.monotonic() - began, load.tally.succeeded - served
    report("rolling update", load, during, took, watch)
    assert load.tally.failed == 0, load.tally.errors
    assert during >= 3 * CLIENTS, f"only {during} streams completed during the rollout"
    # The drains waited on the engines' own counts: a rule that took unknown for 0 never says N > 0.
    assert watch.most_in_flight > 0, sorted(watch.messages)


def test_a_scale_down_under_streaming_load_fails_no_request(
    control_plane: ControlPlane, kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    cp = control_plane
    namespace, _ = start_serving(cp, kubelet, "shrink", 3)

    def scaled_down() -> bool:
        live = pods_of(cp, namespace)
        return sorted(live) == ["chat-0-sim-0-0", "chat-0-sim-0-1"] and available(cp, namespace, "chat", 1)

    with under_load(cp, namespace, tmp_path) as (load, watch):
        began, served = time.monotonic(), load.tally.succeeded
        merge_patch(cp, namespace, "chat", {"spec": {"replicas": 1}})
        wait_for("groups 1 and 2 gone", scaled_down, timeout=90)
        took = time.monotonic() - began
        # The one group left serves every client.
        wait_for("traffic after", lambda: load.tally.succeeded >= served + 2 * CLIENTS, timeout=30)
        during = load.tally.succeeded - served
    report("scale-down 3 -> 1", load, during, took, watch)
    assert load.tally.failed == 0, load.tally.errors
    assert watch.most_in_flight > 0, sorted(watch.messages)


def test_an_operator_killed_mid_rollout_under_load_is_replaced_and_fails_no_request(
    control_plane: ControlPlane, kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    cp = control_plane
    namespace, manifest = start_serving(cp, kubelet, "crash", 3)
    with router_process(cp.kubeconfig, [namespace], tmp_path) as (_, url), contextlib.ExitStack() as stack:
        first = stack.enter_context(operator_process(cp, namespace, tmp_path, name="first"))
        serving_all(cp, namespace, url)
        load = stack.enter_context(streaming(url))
        watch = stack.enter_context(DrainWatch(cp, namespace, "chat"))
        began, served = flowing(load)
        merge_patch(cp, namespace, "chat", new_revision(manifest))
        wait_for(
            "the rollout under way", lambda: seeds(cp, namespace) == {"0", "1"}, timeout=60, interval=0.1
        )
        os.killpg(first.pid, signal.SIGKILL)  # no clean shutdown: the Lease stays held
        first.wait(10)
        stack.enter_context(operator_process(cp, namespace, tmp_path, name="second"))
        # The new operator waits out the dead one's Lease (15 s) first.
        wait_for("every group on the new revision", lambda: rolled_out(cp, namespace), timeout=120)
        took, during = time.monotonic() - began, load.tally.succeeded - served
    report("rollout across an operator crash", load, during, took, watch)
    assert load.tally.failed == 0, load.tally.errors
    assert watch.most_in_flight > 0, sorted(watch.messages)
    assert sorted(pods_of(cp, namespace)) == [f"chat-{g}-sim-0-{p}" for g in range(3) for p in range(2)]
