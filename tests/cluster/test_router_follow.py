"""`phalanx router` follows the operator's entry pods as they appear, drain, vanish and come back.

Real engines (`phalanx sim` on process nodes), the real operator and the router with Kubernetes
discovery. Every fact is read from the router itself (`GET /debug/endpoints`, and its `/metrics`
for who answered what), and timed against the API server's view of the same pod: the printed
figures bound how far the router's view trails the cluster's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Pod
from prometheus_client.parser import text_string_to_metric_families

from phalanx.controller.observed import DRAINING_ANNOTATION
from tests.cluster.controlplane import ControlPlane, operator_process, wait_for
from tests.cluster.procpods import ProcessKubelet, process_kubelet
from tests.cluster.routers import Endpoints, endpoints, eventually, routable_in, router_process
from tests.cluster.servings import MODEL, available, merge_patch
from tests.cluster.test_traffic_e2e import GRACE, start_serving

pytestmark = pytest.mark.cluster

LONG_TOKENS = 500  # about 6 s per stream at the simulator's default inter-token latency
LONG_STREAMS = 4  # spread 2 and 2 over the two groups by the least-in-flight policy
SPREAD = {"x-routing-policy": "least-in-flight"}


@pytest.fixture
def kubelet(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ProcessKubelet]:
    with process_kubelet(control_plane, tmp_path) as running:
        yield running


def follow(
    what: str,
    url: str,
    pod_fact: Callable[[], bool],
    router_fact: Callable[[Endpoints], bool],
    timeout: float = 60.0,
) -> tuple[float, float]:
    """Poll the API server and the router together until the router shows `router_fact`.

    Returns when the router showed it and how long at most after the cluster did: from the start of
    the last API read that did not show `pod_fact` yet (so the figure is an upper bound). The router's
    view may only trail the cluster's: showing a fact first fails."""
    deadline = time.monotonic() + timeout
    not_yet = time.monotonic()
    shown = False
    seen: Endpoints = {}
    while time.monotonic() < deadline:
        if not shown:
            asked = time.monotonic()
            shown = pod_fact()
            not_yet = not_yet if shown else asked
        seen = endpoints(url)
        if router_fact(seen):
            router_at = time.monotonic()
            assert shown or pod_fact(), f"{what}: the router showed it before the cluster did"
            return router_at, router_at - not_yet
        time.sleep(0.05)
    raise AssertionError(f"{what}: not seen within {timeout} s (in the cluster: {shown}); router: {seen}")


class Pods:
    """Facts about one namespace's pods, as the API server has them now."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client, self.namespace = client, namespace

    def get(self, name: str) -> Pod | None:
        try:
            return self.client.get(Pod, name, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise

    def ready(self, name: str, other_than: str = "") -> bool:
        pod = self.get(name)
        if pod is None or pod.metadata is None or pod.metadata.uid == other_than or pod.status is None:
            return False
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        return conditions.get("Ready") == "True" and not pod.metadata.deletionTimestamp

    def uid(self, name: str) -> str | None:
        pod = self.get(name)
        return pod.metadata.uid if pod is not None and pod.metadata is not None else None

    def draining(self, name: str) -> bool:
        pod = self.get(name)
        annotations = (pod.metadata.annotations or {}) if pod is not None and pod.metadata else {}
        return DRAINING_ANNOTATION in annotations

    def gone(self, name: str) -> bool:
        return self.get(name) is None


def answered(url: str) -> dict[str, float]:
    """Requests the router has answered with 200, by endpoint name, from its `/metrics`."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "phalanx_router_requests_total" and sample.labels.get("code") == "200":
                endpoint = sample.labels["endpoint"]
                counts[endpoint] = counts.get(endpoint, 0.0) + sample.value
    return counts


def operator_metrics(operator: subprocess.Popen[bytes]) -> dict[str, float]:
    """The operator's in-flight read metrics, from its own `/metrics` (at its `--health-port`)."""
    args = [str(arg) for arg in operator.args]  # type: ignore[union-attr]
    port = args[args.index("--health-port") + 1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(("phalanx_operator_inflight_reads_total", "phalanx_operator_draining")):
                found[sample.labels.get("outcome") or sample.name] = sample.value
    return found


def long_stream(url: str, index: int) -> tuple[str | None, int]:
    """One streamed completion of `LONG_TOKENS`; its finish reason and the tokens received."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    try:
        stream = client.completions.create(
            model=MODEL,
            prompt=f"Story number {index}",
            max_tokens=LONG_TOKENS,
            stream=True,
            extra_headers=SPREAD,
        )
        finish: str | None = None
        tokens = 0
        for chunk in stream:
            for choice in chunk.choices:
                tokens += 1 if choice.text else 0
                if choice.finish_reason:
                    finish = choice.finish_reason
        return finish, tokens
    finally:
        client.close()


def complete(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
    try:
        answer = client.completions.create(
            model=MODEL, prompt="Say hello", max_tokens=4, extra_headers=SPREAD
        )
    finally:
        client.close()
    assert answer.choices[0].text


def test_the_router_follows_entry_pods_appearing_draining_vanishing_and_recreated(
    control_plane: ControlPlane, kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    cp = control_plane
    # One group of engines that stop at once on SIGTERM: only the drain keeps a stream whole.
    namespace, _ = start_serving(cp, kubelet, "follow", 1)
    pods = Pods(cp.client(), namespace)
    first, second = "chat-0-sim-0-0", "chat-1-sim-0-0"
    ep0, ep1 = f"{namespace}/{first}", f"{namespace}/{second}"
    lags: dict[str, float] = {}
    began = time.monotonic()

    with (
        router_process(cp.kubeconfig, [namespace], tmp_path) as (_, url),
        operator_process(cp, namespace, tmp_path) as operator,
        ThreadPoolExecutor(LONG_STREAMS) as pool,
    ):
        wait_for("one group Available", lambda: available(cp, namespace, "chat", 1), timeout=90)
        eventually("group 0 routable", url, lambda eps: ep0 in routable_in(eps), timeout=30)

        # (a) A group added: its entry pod joins the rotation once Ready (`follow`: never before).
        merge_patch(cp, namespace, "chat", {"spec": {"replicas": 2}})
        lags["added: pod Ready -> routable"] = follow(
            "group 1 routable", url, lambda: pods.ready(second), lambda eps: ep1 in routable_in(eps)
        )[1]

        # ... and receives requests: long streams started one by one alternate between the groups.
        streams: list[Future[tuple[str | None, int]]] = []
        for index in range(LONG_STREAMS):
            streams.append(pool.submit(long_stream, url, index))
            busy = eventually(
                f"{index + 1} streams in flight",
                url,
                lambda eps: eps[ep0]["in_flight"] + eps[ep1]["in_flight"] == len(streams),
                timeout=15,
            )
        assert busy[ep1]["in_flight"] == busy[ep0]["in_flight"] == LONG_STREAMS // 2, busy
        on_second = busy[ep1]["in_flight"]
        before = answered(url)

        # (b) Scale 2 -> 1 under those streams: group 1 drains. The router takes it out of rotation
        # while its streams run on, and sends every new request to group 0.
        merge_patch(cp, namespace, "chat", {"spec": {"replicas": 1}})
        lags["draining: pod marked -> out of rotation"] = follow(
            "group 1 out of rotation",
            url,
            lambda: pods.draining(second),
            lambda eps: ep1 in eps and eps[ep1]["draining"] and not eps[ep1]["routable"],
        )[1]
        assert endpoints(url)[ep1]["in_flight"] >= 1, "the drain had nothing left to wait for"
        for _ in range(6):
            complete(url)
        for stream in streams:
            assert stream.result(timeout=60) == ("length", LONG_TOKENS)
        after = answered(url)
        assert after.get(ep1, 0.0) - before.get(ep1, 0.0) == on_second, (before, after)
        assert after.get(ep0, 0.0) - before.get(ep0, 0.0) == LONG_STREAMS - on_second + 6, (before, after)

        # (c) Its pod gone: it vanishes from the set.
        lags["gone: pod deleted -> out of the set"] = follow(
            "group 1 gone", url, lambda: pods.gone(second), lambda eps: ep1 not in eps, timeout=GRACE + 20
        )[1]
        # The drain waited on the engine's page, read by the operator: its metrics say so.
        reads = wait_for(
            "the operator's reads counted",
            lambda: (m := operator_metrics(operator)).get("phalanx_operator_draining_entry_pods") == 0 and m,
            timeout=10,
        )
        assert reads["ok"] >= 1 and reads["phalanx_operator_draining_entry_pods_unknown"] == 0, reads

        # (d) kill -9 of the entry's engine: the router drops it, then takes the recreated pod.
        old = pods.uid(first)
        assert old is not None
        (engine,) = kubelet.pids(namespace, first)
        killed = time.monotonic()
        os.killpg(engine, signal.SIGKILL)
        dropped_at, lags["killed: pod not Ready -> out of rotation"] = follow(
            "group 0 dropped",
            url,
            lambda: not pods.ready(first),
            lambda eps: ep0 not in routable_in(eps),
            timeout=30,
        )
        lags["killed: kill -9 -> out of rotation"] = dropped_at - killed
        lags["recreated: pod Ready -> routable"] = follow(
            "group 0 back",
            url,
            lambda: pods.ready(first, other_than=old),
            lambda eps: ep0 in routable_in(eps) and pods.uid(first) not in (old, None),
            timeout=60,
        )[1]
        complete(url)
        assert set(endpoints(url)) == {ep0}

    took = time.monotonic() - began
    print(f"operator's in-flight reads: {reads}")
    print(
        f"router follow: {took:.1f} s in all; the router trailed the cluster by at most: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in lags.items())
    )
    assert all(lag < 5.0 for lag in lags.values()), lags
