"""Candidate layouts of whole nodes (DP x TP x PP), their per-GPU budgets, and the choice between them.

Both the search for a plan and the search for fixes ask the same questions, "which layouts of this many nodes
hold this model, and which of them serves the most tokens per node?" and "how few nodes do?", so they share
these answers and cannot drift apart.

On one node every divisor tp of the GPU count that the model allows gives a layout of gpus / tp
data-parallel replicas of tp GPUs each. Only when none of those fits does the node split into pipeline
stages instead (one replica, gpus / tp stages of tp GPUs). A model that needs several nodes runs one replica
across them: the largest tp the model allows inside each node, the nodes as pipeline stages (data
parallelism across nodes is what more ServingGroups are for).

Among the layouts that fit, the one with the highest estimated decode throughput per node wins
(`throughput.py`); estimates within TIE_TOLERANCE of the best count as a tie, which the larger tensor
parallel group wins: it decodes each sequence faster and holds more KV cache per replica. Pipeline stages
inside a node are only a way to fit, so among those the widest tensor parallel group that fits wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from phalanx.planner.memory import fits, memory_budget, sequence_kv_bytes
from phalanx.planner.parallelism import divisors_descending, tp_obstacle
from phalanx.planner.throughput import Replica, estimate
from phalanx.planner.types import (
    Dtype,
    GpuShape,
    LayoutOption,
    MemoryBudget,
    MemoryModel,
    ModelArchitecture,
    Throughput,
)
from phalanx.planner.units import format_gib

MAX_NODES = 64  # the most nodes the planner considers, and the most a fix may ask for
# The throughput model leaves out effects of this size (prefill, kernel efficiency, scheduling), so closer
# estimates are not a reason to prefer more replicas over a larger tensor parallel group.
TIE_TOLERANCE = 0.05


@dataclass(frozen=True)
class Setting:
    """What a layout search holds fixed: model, node shape, dtype, context, and any pinned sizes."""

    model: ModelArchitecture
    shape: GpuShape
    dtype: Dtype
    gpu_memory_utilization: float
    max_model_len: int
    tensor_parallel_size: int | None = None
    data_parallel_size: int | None = None
    memory_model: MemoryModel = "vllm"


@dataclass(frozen=True)
class Layout:
    """A node count with its parallel sizes and the memory budget of one GPU on the heaviest stage."""

    nodes: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    budget: MemoryBudget
    data_parallel_size: int = 1
    throughput: Throughput | None = None


@dataclass(frozen=True)
class Choice:
    """The best layout at one node count (None when none fits) and every option weighed, best first."""

    chosen: Layout | None
    options: tuple[LayoutOption, ...]


Sizes = tuple[int, int, int]  # data, tensor, pipeline parallel


def node_sizes(setting: Setting, nodes: int) -> tuple[list[list[Sizes]], list[LayoutOption]]:
    """The (dp, tp, pp) candidates of `nodes` nodes in the order to try them (a later group only when no
    layout of the earlier ones fits), and the layouts the model's shape rules out."""
    gpus, layers = setting.shape.gpus_per_node, setting.model.num_layers
    groups: list[list[Sizes]] = [[], []] if nodes == 1 else [[]]
    ruled_out: list[LayoutOption] = []
    for tp in divisors_descending(gpus):
        if setting.tensor_parallel_size is not None and tp != setting.tensor_parallel_size:
            continue
        obstacle = tp_obstacle(setting.model, tp, setting.dtype)
        if obstacle is not None:
            ruled_out.append(LayoutOption(1, tp, nodes * (gpus // tp), ruled_out=obstacle))
            continue
        if nodes == 1:
            shapes = [(0, (gpus // tp, tp, 1))] + ([(1, (1, tp, gpus // tp))] if tp < gpus else [])
        else:
            shapes = [(0, (1, tp, nodes * (gpus // tp)))]
        for group, (dp, size, pp) in shapes:
            if setting.data_parallel_size is not None and dp != setting.data_parallel_size:
                continue
            if pp > layers:
                reason = f"{pp} pipeline stages but {setting.model.name} has {layers} layers"
                ruled_out.append(LayoutOption(dp, size, pp, ruled_out=reason))
                continue
            groups[group].append((dp, size, pp))
        if nodes > 1:
            break  # across nodes: the widest tensor parallel group inside each node
    return [group for group in groups if group], ruled_out


def layout(setting: Setting, nodes: int, sizes: Sizes) -> Layout:
    """The layout of `nodes` whole nodes at (dp, tp, pp), with its per-GPU budget."""
    dp, tp, pp = sizes
    budget = memory_budget(
        setting.model,
        setting.dtype,
        tp,
        pp,
        setting.shape.gpu_memory_bytes,
        setting.gpu_memory_utilization,
        setting.memory_model,
    )
    return Layout(
        nodes=nodes, tensor_parallel_size=tp, pipeline_parallel_size=pp, budget=budget, data_parallel_size=dp
    )


def _with_throughput(setting: Setting, candidate: Layout) -> Layout:
    replica = Replica(
        data_parallel_size=candidate.data_parallel_size,
        tensor_parallel_size=candidate.tensor_parallel_size,
        pipeline_parallel_size=candidate.pipeline_parallel_size,
        nodes=candidate.nodes,
        weights=candidate.budget.weights,
        budget=candidate.budget,
    )
    speed = estimate(setting.model, setting.dtype, setting.shape, replica, setting.max_model_len)
    return replace(candidate, throughput=speed)


def _too_small(setting: Setting, candidate: Layout) -> str:
    budget = candidate.budget
    sequence = sequence_kv_bytes(budget, setting.max_model_len)
    return (
        f"does not fit: one {setting.max_model_len}-token sequence needs {format_gib(sequence)} of KV cache"
        f" per GPU, {format_gib(max(0, budget.kv_cache))} is left"
        f" after {format_gib(budget.weights)} of weights"
    )


def _best(fitting: list[Layout]) -> list[Layout]:
    """`fitting` best first: the fastest, unless a larger tensor parallel group is within the tolerance."""

    def speed(candidate: Layout) -> float:
        assert candidate.throughput is not None
        return candidate.throughput.tokens_per_second_per_node

    ranked = sorted(fitting, key=lambda c: (-speed(c), -c.tensor_parallel_size, c.pipeline_parallel_size))
    if not ranked:
        return ranked
    floor = speed(ranked[0]) * (1 - TIE_TOLERANCE)
    tied = [c for c in ranked if speed(c) >= floor]
    winner = max(tied, key=lambda c: (c.tensor_parallel_size, -c.pipeline_parallel_size, speed(c)))
    return [winner, *(c for c in ranked if c is not winner)]


def _option(candidate: Layout, ruled_out: str = "") -> LayoutOption:
    return LayoutOption(
        candidate.data_parallel_size,
        candidate.tensor_parallel_size,
        candidate.pipeline_parallel_size,
        throughput=candidate.throughput,
        ruled_out=ruled_out,
    )


def choose(setting: Setting, nodes: int) -> Choice:
    """The layout of `nodes` nodes that fits and serves the most decode tokens per node (ties: larger TP)."""
    groups, ruled_out = node_sizes(setting, nodes)
    fitting: list[Layout] = []
    too_small: list[LayoutOption] = []
    stages_in_node = False
    for group in groups:
        for candidate in (layout(setting, nodes, size) for size in group):
            if fits(candidate.budget, setting.max_model_len):
                fitting.append(_with_throughput(setting, candidate))
            else:
                too_small.append(_option(candidate, _too_small(setting, candidate)))
        if fitting:
            stages_in_node = nodes == 1 and group[0][2] > 1
            break
    # Pipeline stages inside a node are a way to fit, not to go faster: the widest TP group that fits wins.
    ranked = sorted(fitting, key=lambda c: -c.tensor_parallel_size) if stages_in_node else _best(fitting)
    options = (*(_option(c) for c in ranked), *too_small, *ruled_out)
    return Choice(chosen=ranked[0] if ranked else None, options=options)


def widest(setting: Setting, nodes: int) -> Layout | None:
    """The layout of `nodes` nodes with the least memory per GPU (one replica over every GPU), if any."""
    groups, _ = node_sizes(setting, nodes)
    if not groups:
        return None
    candidates = (layout(setting, nodes, size) for group in groups for size in group)
    return min(candidates, key=lambda c: (c.data_parallel_size, c.budget.weights))


def fewest_fitting(setting: Setting, node_counts: Iterable[int]) -> Layout | None:
    """The chosen layout at the first of `node_counts` (ascending) where any layout fits, else None."""
    for nodes in node_counts:
        chosen = choose(setting, nodes).chosen
        if chosen is not None:
            return chosen
    return None
