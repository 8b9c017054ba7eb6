"""Static catalogs the planner reads: model architectures, GPU products and cloud instance types."""

from phalanx.planner.catalog.gpus import (
    GPU_PRODUCTS,
    INSTANCE_ALIASES,
    INSTANCE_TYPES,
    UnknownGpuProductError,
    UnknownInstanceTypeError,
    find_gpu_product,
    find_instance_type,
    get_gpu_product,
    get_instance_type,
    instance_shape,
    instance_type_names,
    shape_for_instance,
    shape_from_memory,
    suggest_instance_types,
)
from phalanx.planner.catalog.models import (
    MODELS,
    UnknownModelError,
    find_model,
    get_model,
    model_names,
    suggest_models,
)
from phalanx.planner.catalog.names import UnknownNameError

__all__ = [
    "GPU_PRODUCTS",
    "INSTANCE_ALIASES",
    "INSTANCE_TYPES",
    "MODELS",
    "UnknownGpuProductError",
    "UnknownInstanceTypeError",
    "UnknownModelError",
    "UnknownNameError",
    "find_gpu_product",
    "find_instance_type",
    "find_model",
    "get_gpu_product",
    "get_instance_type",
    "get_model",
    "instance_shape",
    "instance_type_names",
    "model_names",
    "shape_for_instance",
    "shape_from_memory",
    "suggest_instance_types",
    "suggest_models",
]
