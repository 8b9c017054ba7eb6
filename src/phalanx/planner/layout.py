"""One candidate layout (node count, tp, pp) and its per-GPU budget; finding the fewest nodes that fit.

Both the search for a plan and the search for fixes ask the same question, "how few nodes of this shape
hold this model?", so they share this one answer and cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from phalanx.planner.memory import fits, memory_budget
from phalanx.planner.parallelism import choose_tensor_parallel, max_nodes_for_layers, pipeline_parallel_size
from phalanx.planner.types import Dtype, GpuShape, MemoryBudget, ModelArchitecture, PlanningError

MAX_NODES = 64  # the most nodes the planner considers, and the most a fix may ask for


@dataclass(frozen=True)
class Layout:
    """A node count with its parallel sizes and the memory budget of one GPU on the heaviest stage."""

    nodes: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    budget: MemoryBudget


def layout(
    model: ModelArchitecture,
    shape: GpuShape,
    dtype: Dtype,
    gpu_memory_utilization: float,
    tp: int,
    nodes: int,
) -> Layout:
    """The layout of `nodes` whole nodes at tensor parallel size `tp` (pp follows from the shape)."""
    pp = pipeline_parallel_size(nodes, shape.gpus_per_node, tp)
    budget = memory_budget(model, dtype, tp, pp, shape.gpu_memory_bytes, gpu_memory_utilization)
    return Layout(nodes=nodes, tensor_parallel_size=tp, pipeline_parallel_size=pp, budget=budget)


def fewest_fitting(
    model: ModelArchitecture,
    shape: GpuShape,
    dtype: Dtype,
    gpu_memory_utilization: float,
    max_model_len: int,
    node_counts: Iterable[int],
) -> Layout | None:
    """The first of `node_counts` (ascending) whose layout holds one `max_model_len` sequence, else None.

    Counts whose pipeline would have more stages than the model has layers are skipped, and so is a
    shape the model cannot be split over at all.
    """
    try:
        tp = choose_tensor_parallel(model, shape.gpus_per_node, dtype).size
    except PlanningError:
        return None
    limit = max_nodes_for_layers(model, shape.gpus_per_node, tp)
    for nodes in node_counts:
        if nodes > limit:
            return None
        candidate = layout(model, shape, dtype, gpu_memory_utilization, tp, nodes)
        if fits(candidate.budget, max_model_len):
            return candidate
    return None
