"""Which tensor parallel sizes a model allows, and how a node's GPUs split into DP, TP and PP.

Every pod takes a whole node. Inside one node the GPUs are data-parallel engine replicas of tp GPUs each
(dp x tp = GPUs per node), or one replica of tp GPUs per pipeline stage (tp x stages = GPUs per node). A
model too big for one node spans nodes: tensor parallel inside each node, pipeline parallel across them,
pp = nodes x (gpus_per_node // tp). The checks are the ones vLLM makes at startup, so a layout that passes
here does not fail there for a shape reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.planner.types import Dtype, ModelArchitecture, PlanningError


@dataclass(frozen=True)
class TensorParallelChoice:
    """The chosen tp and, for each larger divisor of the GPUs per node, why it could not be used."""

    size: int
    rejected: tuple[tuple[int, str], ...] = ()  # (a larger tp, why the model cannot be split over it)


def _ffn_sizes(model: ModelArchitecture) -> list[tuple[str, int]]:
    """The FFN widths that TP shards: the dense one if any layer is dense, and the expert one."""
    sizes: list[tuple[str, int]] = []
    if model.moe is None or model.moe.num_dense_layers > 0:
        sizes.append(("intermediate_size", model.intermediate_size))
    if model.moe is not None:
        sizes.append(("moe_intermediate_size", model.moe.moe_intermediate_size))
    return sizes


def tp_obstacle(model: ModelArchitecture, tp: int, dtype: Dtype) -> str | None:
    """Why `model` cannot be split over `tp` ranks in `dtype`, or None if it can."""
    heads = model.num_attention_heads
    if heads % tp:
        return f"{heads} attention heads are not divisible by {tp}"
    kv = model.num_kv_heads
    if model.mla is None and kv % tp and tp % kv:
        return f"{kv} KV heads can be neither split nor replicated evenly over {tp} ranks"
    for field, size in _ffn_sizes(model):
        if size % tp:
            return f"{field} {size} is not divisible by {tp}"
        block = model.fp8_block_size
        if dtype == "fp8" and block is not None and (size // tp) % block:
            return (
                f"the fp8 checkpoint is quantised in {block}-wide blocks and {field} {size} / {tp}"
                f" = {size // tp} is not a multiple of {block}"
            )
    return None


def choose_tensor_parallel(
    model: ModelArchitecture, gpus_per_node: int, dtype: Dtype
) -> TensorParallelChoice:
    """The largest divisor of `gpus_per_node` the model allows, and why each larger one is ruled out.

    Raises PlanningError when not even tp 1 works.
    """
    rejected: list[tuple[int, str]] = []
    for tp in divisors_descending(gpus_per_node):
        obstacle = tp_obstacle(model, tp, dtype)
        if obstacle is None:
            return TensorParallelChoice(size=tp, rejected=tuple(rejected))
        rejected.append((tp, obstacle))
    raise PlanningError(
        f"{model.name} cannot run in {dtype} at any tensor parallel size: tp 1: {rejected[-1][1]}",
        fixes=("serve it in bf16 from a bf16 copy of the checkpoint",) if dtype == "fp8" else (),
        field="dtype",
    )


def divisors_descending(n: int) -> list[int]:
    return sorted((d for d in range(1, n + 1) if n % d == 0), reverse=True)


def pipeline_parallel_size(nodes: int, gpus_per_node: int, tp: int, dp: int = 1) -> int:
    """Pipeline stages: the GPUs a node has beyond dp x tp become stages too, and every node adds its own."""
    return nodes * (gpus_per_node // (tp * dp))


def max_nodes_for_layers(model: ModelArchitecture, gpus_per_node: int, tp: int) -> int:
    """The most nodes whose pipeline stages each still get a layer (pp <= num_layers); may be 0."""
    return model.num_layers // (gpus_per_node // tp)
