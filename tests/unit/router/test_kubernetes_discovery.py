"""The watch adapter against an in-memory API server behind lightkube's transport seam (no sockets)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from lightkube import AsyncClient, KubeConfig

from phalanx.api import labels as L
from phalanx.controller.observed import DRAINING_ANNOTATION
from phalanx.router.declared import Declared
from phalanx.router.endpoints import Endpoint
from phalanx.router.kubernetes import KubernetesDiscovery

Object = dict[str, Any]
END = None  # queued on a watch: the server closes it normally (as at timeoutSeconds)


class _Events(httpx2.AsyncByteStream):
    def __init__(self, queue: asyncio.Queue[bytes | Exception | None]) -> None:
        self.queue = queue

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item


@dataclass
class Watch:
    plural: str
    namespace: str | None
    selector: str
    queue: asyncio.Queue[bytes | Exception | None] = field(default_factory=asyncio.Queue)


class FakeApi:
    """Pods and ModelServings with list, label selectors and watches; faults on demand."""

    def __init__(self) -> None:
        self.rv = 1
        self.store: dict[str, dict[tuple[str, str], Object]] = {"pods": {}, "modelservings": {}}
        self.watches: list[Watch] = []
        self.requests: list[tuple[str, str | None, dict[str, str]]] = []
        self.list_failures: list[int] = []  # status codes the next lists answer with
        self.watch_failures: dict[str, list[int]] = {"pods": [], "modelservings": []}  # ... and watches

    # -- what tests do -----------------------------------------------------------------------
    def put(self, obj: Object) -> None:
        plural = "pods" if obj["kind"] == "Pod" else "modelservings"
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        kind = "MODIFIED" if key in self.store[plural] else "ADDED"
        self.store[plural][key] = obj
        self._send(plural, obj, kind)

    def delete(self, plural: str, namespace: str, name: str, *, quietly: bool = False) -> None:
        obj = self.store[plural].pop((namespace, name))
        self.rv += 1
        if not quietly:
            self._send(plural, obj, "DELETED")

    def break_watches(self, item: Exception | bytes | None) -> None:
        for watch in self.watches:
            watch.queue.put_nowait(item)
        self.watches.clear()

    def expire_watches(self) -> None:
        status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired"}
        self.break_watches(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")

    # -- the server ------------------------------------------------------------------------
    def _send(self, plural: str, obj: Object, kind: str) -> None:
        line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        for watch in self.watches:
            if (
                watch.plural == plural
                and watch.namespace in (None, obj["metadata"]["namespace"])
                and self._selected(obj, watch.selector)
            ):
                watch.queue.put_nowait(line)

    @staticmethod
    def _selected(obj: Object, selector: str) -> bool:
        labels = obj["metadata"].get("labels") or {}
        for term in filter(None, selector.split(",")):
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
        return True

    @staticmethod
    def _status(code: int) -> httpx2.Response:
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": "nope"}
        return httpx2.Response(code, json=body)

    async def handler(self, request: httpx2.Request) -> httpx2.Response:
        parts = request.url.path.strip("/").split("/")
        plural = parts[-1]
        namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else None
        params = dict(request.url.params)
        self.requests.append((plural, namespace, params))
        selector = params.get("labelSelector", "")
        if params.get("watch") == "true" and self.watch_failures[plural]:
            return self._status(self.watch_failures[plural].pop(0))
        if params.get("watch") == "true":
            watch = Watch(plural, namespace, selector)
            self.watches.append(watch)
            return httpx2.Response(200, stream=_Events(watch.queue))
        if self.list_failures:
            code = self.list_failures.pop(0)
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": code,
                "message": "nope",
            }
            return httpx2.Response(code, json=body)
        items = [
            obj
            for (ns, _), obj in sorted(self.store[plural].items())
            if namespace in (None, ns) and self._selected(obj, selector)
        ]
        kind = "PodList" if plural == "pods" else "ModelServingList"
        return httpx2.Response(
            200, json={"kind": kind, "metadata": {"resourceVersion": str(self.rv)}, "items": items}
        )


def pod(
    name: str,
    namespace: str = "team-a",
    *,
    serving: str = "demo",
    entry: bool = True,
    ready: bool = True,
    annotations: dict[str, str] | None = None,
    model: str = "tiny",
) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {L.NAME: serving, L.GROUP_INDEX: "0", L.ENTRY: "true" if entry else "false"},
            "annotations": annotations or {},
        },
        "spec": {
            "containers": [
                {
                    "name": "engine",
                    "image": "phalanx:0.1.0",
                    "command": ["phalanx", "sim"],
                    "args": ["--served-model-name", model],
                    "ports": [{"name": "http", "containerPort": 8000}],
                }
            ]
        },
        "status": {
            "phase": "Running" if ready else "Pending",
            "podIP": "10.244.0.7",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def serving(name: str = "demo", namespace: str = "team-a") -> Object:
    return {
        "apiVersion": L.GROUP_VERSION,
        "kind": "ModelServing",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": {},
    }


class Published:
    def __init__(self) -> None:
        self.sets: list[list[Endpoint]] = []

    def __call__(self, endpoints: list[Endpoint]) -> None:
        self.sets.append(endpoints)

    @property
    def last(self) -> dict[str, tuple[bool, tuple[str, ...]]]:
        """Endpoint name -> (routable, models) of the last set published."""
        assert self.sets, "nothing published"
        return {ep.name: (ep.routable, ep.models) for ep in self.sets[-1]}


async def eventually(what: str, check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `check`; a failed assertion inside it counts as "not yet"."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            if check():
                return
        except AssertionError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
async def client(api: FakeApi) -> AsyncIterator[AsyncClient]:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "fake", "cluster": {"server": "http://kube.test"}}],
            "users": [{"name": "router", "user": {"token": "t"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "router"}}],
            "current-context": "fake",
        }
    )
    c = AsyncClient(config, transport=httpx2.MockTransport(api.handler))
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def published() -> Published:
    return Published()


async def running(
    client: AsyncClient, published: Published, namespaces: tuple[str, ...] = ()
) -> KubernetesDiscovery:
    discovery = KubernetesDiscovery(client, published, namespaces, backoff=(0.01, 0.05))
    await discovery.start()
    return discovery


async def test_entry_pods_of_existing_model_servings_are_published_after_both_lists(
    api: FakeApi, client: AsyncClient, published: Published
) -> None:
    api.put(serving())
    api.put(pod("demo-0-sim-0-0"))
    api.put(pod("demo-0-sim-0-1", entry=False))
    api.put(pod("orphan-0-sim-0-0", serving="orphan"))
    discovery = await running(client, published)
    try:
        await eventually("the first set", lambda: bool(published.sets))
        assert published.last == {"team-a/demo-0-sim-0-0": (True, ("tiny",))}
        assert len(published.sets) == 1  # not once per mirror
        pod_lists = [p for plural, _, p in api.requests if plural == "pods" and "watch" not in p]
        assert pod_lists == [{"labelSelector": f"{L.ENTRY}=true"}]
    finally:
        await discovery.close()


async def test_watch_events_follow_readiness_draining_and_deletion(
    api: FakeApi, client: AsyncClient, published: Published
) -> None:
    api.put(serving())
    discovery = await running(client, published)
    try:
        await eventually("the empty set", lambda: published.sets == [[]])
        await eventually("both watches", lambda: len(api.watches) == 2)
        api.put(pod("demo-0-sim-0-0", ready=False))
        await eventually(
            "a pod not ready", lambda: published.last == {"team-a/demo-0-sim-0-0": (False, ("tiny",))}
        )
        api.put(pod("demo-0-sim-0-0"))
        await eventually(
            "the pod ready", lambda: published.last == {"team-a/demo-0-sim-0-0": (True, ("tiny",))}
        )
        count = len(published.sets)
        api.put(pod("demo-0-sim-0-0"))  # a change that does not alter the endpoint
        api.put(pod("demo-0-sim-0-1", entry=False))  # a worker: filtered by the selector
        api.put(pod("demo-1-sim-0-0", annotations={DRAINING_ANNOTATION: "2026-11-23T00:00:00Z"}))
        await eventually("a draining pod", lambda: "team-a/demo-1-sim-0-0" in published.last)
        assert published.last["team-a/demo-1-sim-0-0"] == (False, ("tiny",))
        assert len(published.sets) == count + 1
        api.delete("pods", "team-a", "demo-0-sim-0-0")
        await eventually("the deletion", lambda: "team-a/demo-0-sim-0-0" not in published.last)
        api.delete("modelservings", "team-a", "demo")
        await eventually("the ModelServing gone", lambda: published.last == {})
    finally:
        await discovery.close()


async def test_a_relist_after_an_expired_watch_replaces_the_cache(
    api: FakeApi, client: AsyncClient, published: Published
) -> None:
    api.put(serving())
    api.put(pod("a"))
    api.put(pod("b"))
    discovery = await running(client, published)
    try:
        await eventually("both pods", lambda: set(published.last) == {"team-a/a", "team-a/b"})
        await eventually("both watches", lambda: len(api.watches) == 2)
        api.delete("pods", "team-a", "a", quietly=True)  # missed: no watch saw it
        api.put(pod("c"))
        api.expire_watches()  # 410 Gone
        await eventually("the relisted set", lambda: set(published.last) == {"team-a/b", "team-a/c"})
    finally:
        await discovery.close()


@pytest.mark.parametrize(
    "fault",
    [
        httpx2.ReadError("connection reset by peer"),  # an API server restart mid-watch
        END,  # the server ends the watch: lightkube resumes from the last resource version
    ],
    ids=["connection-lost", "watch-ended"],
)
async def test_watches_resume_after_a_lost_connection(
    api: FakeApi, client: AsyncClient, published: Published, fault: Exception | None
) -> None:
    api.put(serving())
    discovery = await running(client, published)
    try:
        await eventually("both watches", lambda: len(api.watches) == 2)
        api.break_watches(fault)
        await eventually("watches again", lambda: len(api.watches) == 2)
        api.put(pod("a"))
        await eventually("the new pod", lambda: published.last == {"team-a/a": (True, ("tiny",))})
    finally:
        await discovery.close()


async def test_failing_lists_are_retried_and_logged_without_publishing_a_partial_view(
    api: FakeApi, client: AsyncClient, published: Published, caplog: pytest.LogCaptureFixture
) -> None:
    api.put(serving())
    api.put(pod("a"))
    api.list_failures = [403, 500, 503]
    with caplog.at_level(logging.WARNING, logger="phalanx.router.kubernetes"):
        discovery = await running(client, published)
        try:
            await eventually("the set", lambda: bool(published.sets))
            assert published.sets == [published.sets[0]]  # nothing before every list succeeded
            assert published.last == {"team-a/a": (True, ("tiny",))}
        finally:
            await discovery.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "403" in warnings[0] and "listing again" in warnings[0]


async def test_a_watch_that_keeps_failing_backs_off_up_to_the_cap(
    api: FakeApi, client: AsyncClient, published: Published, caplog: pytest.LogCaptureFixture
) -> None:
    api.put(serving())
    api.watch_failures["pods"] = [403] * 5  # may list, may not watch: every try fails at once
    with caplog.at_level(logging.WARNING, logger="phalanx.router.kubernetes"):
        discovery = await running(client, published)
        try:
            await eventually("watching again", lambda: len(api.watches) == 2)
        finally:
            await discovery.close()
    delays = [r.getMessage().rsplit(" ", 1)[-1] for r in caplog.records]
    assert delays == ["0.01s", "0.02s", "0.04s", "0.05s", "0.05s"]
    assert published.last == {}  # listing worked throughout


async def test_one_watch_per_namespace_and_resource(
    api: FakeApi, client: AsyncClient, published: Published
) -> None:
    for ns in ("team-a", "team-b", "team-c"):
        api.put(serving(namespace=ns))
        api.put(pod("demo-0-sim-0-0", ns))
    discovery = await running(client, published, ("team-a", "team-b", "team-a"))
    try:
        await eventually("two namespaces", lambda: bool(published.sets))
        assert set(published.last) == {"team-a/demo-0-sim-0-0", "team-b/demo-0-sim-0-0"}
        await eventually("four watches", lambda: len(api.watches) == 4)
        assert sorted((w.plural, w.namespace) for w in api.watches) == [
            ("modelservings", "team-a"),
            ("modelservings", "team-b"),
            ("pods", "team-a"),
            ("pods", "team-b"),
        ]
    finally:
        await discovery.close()
    assert discovery.published is not None


async def test_all_namespaces_is_one_cluster_wide_watch_per_resource(
    api: FakeApi, client: AsyncClient, published: Published
) -> None:
    api.put(serving(namespace="team-a"))
    api.put(serving(namespace="team-b"))
    api.put(pod("demo-0-sim-0-0", "team-a"))
    api.put(pod("demo-0-sim-0-0", "team-b", model="other"))
    discovery = await running(client, published)
    try:
        await eventually("both namespaces", lambda: len(published.last) == 2)
        assert published.last["team-b/demo-0-sim-0-0"] == (True, ("other",))
        await eventually("two watches", lambda: len(api.watches) == 2)
        assert {w.namespace for w in api.watches} == {None}
    finally:
        await discovery.close()


async def test_a_failing_consumer_is_logged_and_discovery_goes_on(
    api: FakeApi, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[list[Endpoint]] = []

    def flaky(endpoints: list[Endpoint]) -> None:
        calls.append(endpoints)
        if len(calls) == 1:
            raise ValueError("refused")

    api.put(serving())
    discovery = KubernetesDiscovery(client, flaky, backoff=(0.01, 0.05))
    await discovery.start()
    try:
        await eventually("the first try", lambda: len(calls) == 1)
        await eventually("both watches", lambda: len(api.watches) == 2)
        api.put(pod("a"))
        await eventually("the next set", lambda: len(calls) == 2)
        assert [ep.name for ep in calls[1]] == ["team-a/a"]
    finally:
        await discovery.close()
    assert any("could not publish" in r.getMessage() for r in caplog.records)


async def test_the_models_model_servings_declare_are_published_even_with_no_pod(
    api: FakeApi, client: AsyncClient, published: Published
) -> None:
    declared: list[Declared] = []
    zero = serving()
    entry = {"spec": {"containers": [pod("x")["spec"]["containers"][0]]}}
    zero["spec"] = {"replicas": 0, "template": {"roles": [{"name": "r", "entryTemplate": entry}]}}
    api.put(zero)
    discovery = KubernetesDiscovery(client, published, backoff=(0.01, 0.05), on_declared=declared.append)
    await discovery.start()
    try:
        await eventually("the first declaration", lambda: bool(declared))
        assert declared == [Declared(frozenset({"tiny"}), complete=True)]
        assert published.sets == [[]]  # no pod: no endpoint, but the model is known
        await eventually("both watches", lambda: len(api.watches) == 2)
        api.put(pod("demo-0-sim-0-0", ready=False))  # an endpoint change declares nothing new
        await eventually("the pod", lambda: bool(published.last))
        assert len(declared) == 1
        api.delete("modelservings", "team-a", "demo")
        await eventually("the ModelServing gone", lambda: len(declared) == 2)
        assert declared[-1] == Declared(frozenset(), complete=True)
    finally:
        await discovery.close()
