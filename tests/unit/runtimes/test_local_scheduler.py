from __future__ import annotations

from phalanx.runtimes.local.scheduler import Gang, PendingPod, gang_name, gang_phase, gpu_need, schedule


def pod(name: str, gpus: int, gang: str | None = None, created: float = 0.0) -> PendingPod:
    return PendingPod(("default", name), gpus, gang, created)


def gang(name: str, min_member: int, members: int) -> dict[tuple[str, str], Gang]:
    return {("default", name): Gang(("default", name), min_member, members)}


def test_gang_waits_whole_when_gpus_are_short() -> None:
    pending = [pod("g-0", 4, "g"), pod("g-1", 4, "g")]
    decision = schedule(pending, gang("g", 2, 2), free=[4, 5, 6, 7], total=8)
    assert decision.bindings == {}
    message = "gang g needs 8 GPUs, 4 of 8 free"
    assert decision.unschedulable == {("default", "g-0"): message, ("default", "g-1"): message}
    assert decision.gangs_waiting == {("default", "g"): message}


def test_gang_binds_together_once_gpus_free_up() -> None:
    pending = [pod("g-0", 4, "g"), pod("g-1", 4, "g")]
    decision = schedule(pending, gang("g", 2, 2), free=range(8), total=8)
    assert decision.bindings == {("default", "g-0"): (0, 1, 2, 3), ("default", "g-1"): (4, 5, 6, 7)}
    assert decision.unschedulable == {}


def test_gang_waits_for_min_member_pods() -> None:
    decision = schedule([pod("g-0", 0, "g")], gang("g", 2, 1), free=[], total=0)
    assert decision.unschedulable == {("default", "g-0"): "gang g has 1 of 2 pods"}


def test_gang_without_its_pod_group_waits() -> None:
    decision = schedule([pod("g-0", 0, "g")], {}, free=[], total=0)
    assert decision.unschedulable == {("default", "g-0"): "gang g has no PodGroup yet"}


def test_pods_without_gang_are_placed_one_by_one_oldest_first() -> None:
    pending = [pod("late", 2, created=2.0), pod("early", 2, created=1.0), pod("small", 1, created=3.0)]
    decision = schedule(pending, {}, free=[1, 2, 3], total=4)
    assert decision.bindings == {("default", "early"): (1, 2), ("default", "small"): (3,)}
    assert decision.unschedulable == {("default", "late"): "pod late needs 2 GPUs, 1 of 4 free"}


def test_a_pod_larger_than_the_machine_says_so() -> None:
    decision = schedule([pod("big", 16)], {}, free=range(8), total=8)
    assert "needs 16 GPUs, this machine has 8" in decision.unschedulable[("default", "big")]


def test_gpu_free_pods_always_fit() -> None:
    decision = schedule([pod("a", 0), pod("b", 0)], {}, free=[], total=0)
    assert decision.bindings == {("default", "a"): (), ("default", "b"): ()}


def test_gpu_need_sums_containers_and_covers_init_containers() -> None:
    spec = {
        "containers": [
            {"name": "a", "resources": {"limits": {"nvidia.com/gpu": "2"}}},
            {"name": "b", "resources": {"requests": {"nvidia.com/gpu": 1}}},
            {"name": "c"},
        ],
        "initContainers": [{"name": "i", "resources": {"limits": {"nvidia.com/gpu": 4}}}],
    }
    assert gpu_need(spec) == 4
    spec["initContainers"] = []
    assert gpu_need(spec) == 3


def test_gang_name_from_volcano_annotation_or_coscheduling_label() -> None:
    volcano = {"metadata": {"annotations": {"scheduling.k8s.io/group-name": "q-0"}}}
    cosched = {"metadata": {"labels": {"scheduling.x-k8s.io/pod-group": "q-1"}}}
    assert gang_name(volcano) == "q-0"
    assert gang_name(cosched) == "q-1"
    assert gang_name({"metadata": {}}) is None


def test_gang_phase() -> None:
    assert gang_phase(2, bound=0, running=0, waiting=True) == "Pending"
    assert gang_phase(2, bound=2, running=1, waiting=False) == "Inqueue"
    assert gang_phase(2, bound=2, running=2, waiting=False) == "Running"
