"""The planner: model catalog x GPU catalog -> a plan (nodes, tp, pp, memory budget) or a PlanningError.

Pure and standard-library only: nothing here imports the rest of Phalanx, so every layer can use it.
"""

from phalanx.planner.catalog import (
    GPU_PRODUCTS,
    INSTANCE_TYPES,
    MODELS,
    UnknownGpuProductError,
    UnknownInstanceTypeError,
    UnknownModelError,
    UnknownNameError,
    find_instance_type,
    find_model,
    get_gpu_product,
    get_instance_type,
    get_model,
    instance_type_names,
    model_names,
    shape_for_instance,
    shape_from_memory,
    suggest_instance_types,
    suggest_models,
)
from phalanx.planner.memory import kv_bytes_per_token, runtime_overhead_bytes, weight_bytes_per_gpu
from phalanx.planner.output import plan_to_dict
from phalanx.planner.search import make_plan
from phalanx.planner.types import (
    MLA,
    Dtype,
    GiB,
    GpuProduct,
    GpuShape,
    InstanceType,
    MemoryBudget,
    ModelArchitecture,
    MoE,
    Plan,
    PlanningError,
    PlanRequest,
)
from phalanx.planner.units import format_bytes, format_gib, parse_memory

__all__ = [
    "GPU_PRODUCTS",
    "INSTANCE_TYPES",
    "MLA",
    "MODELS",
    "Dtype",
    "GiB",
    "GpuProduct",
    "GpuShape",
    "InstanceType",
    "MemoryBudget",
    "MoE",
    "ModelArchitecture",
    "Plan",
    "PlanRequest",
    "PlanningError",
    "UnknownGpuProductError",
    "UnknownInstanceTypeError",
    "UnknownModelError",
    "UnknownNameError",
    "find_instance_type",
    "find_model",
    "format_bytes",
    "format_gib",
    "get_gpu_product",
    "get_instance_type",
    "get_model",
    "instance_type_names",
    "kv_bytes_per_token",
    "make_plan",
    "model_names",
    "parse_memory",
    "plan_to_dict",
    "runtime_overhead_bytes",
    "shape_for_instance",
    "shape_from_memory",
    "suggest_instance_types",
    "suggest_models",
    "weight_bytes_per_gpu",
]
