"""GPU products and the cloud instance types that carry them.

Memory convention: a GPU marketed as "N GB" is counted as N GiB (`N * 1024**3` bytes), the way KAITO's SKU
catalog writes it ("80Gi"). The device itself reports a little less (nvidia-smi shows about 79.6 GiB on an
"80 GB" H100), so a `gpu_memory_utilization` of 0.9 or below is what keeps the plan on the safe side of the
real card; the planner never budgets the full nominal size. B200 is listed at the 180 GB that HGX/DGX B200
systems expose per GPU, not the 192 GB of the marketing sheet.

`nvlink` says whether the GPUs of one node talk over NVLink (SXM boards, or the NVLink bridge pairs of
H100 NVL). Without it tensor parallelism runs over PCIe, which the vLLM docs advise against across many GPUs.

Sources: NVIDIA datasheets for memory and bandwidth; KAITO's SKU tables and the clouds' instance pages for
which GPUs each instance type carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from phalanx.planner.catalog.names import UnknownNameError, close_names, normalise
from phalanx.planner.types import GiB, GpuProduct, GpuShape, InstanceType
from phalanx.planner.units import parse_memory

# Memory bandwidth and the one-way GPU-to-GPU link speed are NVIDIA datasheet peaks (decimal units): NVLink 3
# 300 GB/s, NVLink 4 450 GB/s, NVLink 5 900 GB/s each way; the H100 NVL bridge joins pairs at 300 GB/s each
# way; cards without NVLink talk over PCIe 4.0 x16, 32 GB/s each way.
PCIE4 = 32e9
# dense_flops: the datasheet's BF16 tensor-core peak without sparsity (half the "with sparsity" figure).
# NVIDIA publishes none for the A10G (an AWS variant): it is taken as the A10's, which may overstate it.
A10: Final = GpuProduct(
    "A10", 24 * GiB, nvlink=False, memory_bandwidth=600e9, link_bandwidth=PCIE4, dense_flops=125e12
)
# AWS G5 variant of the A10
A10G: Final = GpuProduct(
    "A10G", 24 * GiB, nvlink=False, memory_bandwidth=600e9, link_bandwidth=PCIE4, dense_flops=125e12
)
L4: Final = GpuProduct(
    "L4", 24 * GiB, nvlink=False, memory_bandwidth=300e9, link_bandwidth=PCIE4, dense_flops=121e12
)
L40S: Final = GpuProduct(
    "L40S", 48 * GiB, nvlink=False, memory_bandwidth=864e9, link_bandwidth=PCIE4, dense_flops=362e12
)
A100_40GB: Final = GpuProduct(
    "A100-40GB", 40 * GiB, nvlink=True, memory_bandwidth=1555e9, link_bandwidth=300e9, dense_flops=312e12
)
A100_80GB: Final = GpuProduct(
    "A100-80GB", 80 * GiB, nvlink=True, memory_bandwidth=2039e9, link_bandwidth=300e9, dense_flops=312e12
)
# Azure's NC A100 v4 documents PCIe A100 cards and no NVLink between them.
A100_80GB_PCIE: Final = GpuProduct(
    "A100-80GB-PCIe",
    80 * GiB,
    nvlink=False,
    memory_bandwidth=1935e9,
    link_bandwidth=PCIE4,
    dense_flops=312e12,
)
H100_80GB: Final = GpuProduct(
    "H100-80GB", 80 * GiB, nvlink=True, memory_bandwidth=3350e9, link_bandwidth=450e9, dense_flops=989e12
)
# PCIe cards joined in NVLink-bridged pairs
H100_NVL: Final = GpuProduct(
    "H100-NVL-94GB", 94 * GiB, nvlink=True, memory_bandwidth=3900e9, link_bandwidth=300e9, dense_flops=835e12
)
H200: Final = GpuProduct(
    "H200-141GB", 141 * GiB, nvlink=True, memory_bandwidth=4800e9, link_bandwidth=450e9, dense_flops=989e12
)
B200: Final = GpuProduct(
    "B200-180GB", 180 * GiB, nvlink=True, memory_bandwidth=8000e9, link_bandwidth=900e9, dense_flops=2250e12
)

GPU_PRODUCTS: Final[tuple[GpuProduct, ...]] = (
    A10,
    A10G,
    L4,
    L40S,
    A100_40GB,
    A100_80GB,
    A100_80GB_PCIE,
    H100_80GB,
    H100_NVL,
    H200,
    B200,
)


def _azure(name: str, gpu: GpuProduct, count: int) -> InstanceType:
    return InstanceType(name=name, cloud="azure", gpu=gpu, gpu_count=count)


def _aws(name: str, gpu: GpuProduct, count: int) -> InstanceType:
    return InstanceType(name=name, cloud="aws", gpu=gpu, gpu_count=count)


def _gcp(name: str, gpu: GpuProduct, count: int) -> InstanceType:
    return InstanceType(name=name, cloud="gcp", gpu=gpu, gpu_count=count)


INSTANCE_TYPES: Final[tuple[InstanceType, ...]] = (
    _azure("Standard_NV36ads_A10_v5", A10, 1),
    _azure("Standard_NV72ads_A10_v5", A10, 2),
    _azure("Standard_NC24ads_A100_v4", A100_80GB_PCIE, 1),
    _azure("Standard_NC48ads_A100_v4", A100_80GB_PCIE, 2),
    _azure("Standard_NC96ads_A100_v4", A100_80GB_PCIE, 4),
    _azure("Standard_ND96asr_v4", A100_40GB, 8),
    _azure("Standard_ND96amsr_A100_v4", A100_80GB, 8),
    _azure("Standard_NC40ads_H100_v5", H100_NVL, 1),
    _azure("Standard_NCC40ads_H100_v5", H100_NVL, 1),  # the confidential-computing variant
    _azure("Standard_NC80adis_H100_v5", H100_NVL, 2),  # no InfiniBand: prefer pipeline stages across nodes
    _azure("Standard_ND96isr_H100_v5", H100_80GB, 8),
    _azure("Standard_ND96isr_H200_v5", H200, 8),
    _aws("p4d.24xlarge", A100_40GB, 8),
    _aws("p4de.24xlarge", A100_80GB, 8),
    _aws("p5.48xlarge", H100_80GB, 8),
    _aws("p5e.48xlarge", H200, 8),
    _aws("p5en.48xlarge", H200, 8),
    _aws("g5.xlarge", A10G, 1),
    _aws("g5.12xlarge", A10G, 4),
    _aws("g5.24xlarge", A10G, 4),
    _aws("g5.48xlarge", A10G, 8),
    _aws("g6.xlarge", L4, 1),
    _aws("g6.12xlarge", L4, 4),
    _aws("g6.24xlarge", L4, 4),
    _aws("g6.48xlarge", L4, 8),
    _aws("g6e.xlarge", L40S, 1),
    _aws("g6e.12xlarge", L40S, 4),
    _aws("g6e.24xlarge", L40S, 4),
    _aws("g6e.48xlarge", L40S, 8),
    _gcp("a2-highgpu-8g", A100_40GB, 8),
    _gcp("a2-ultragpu-8g", A100_80GB, 8),
    _gcp("a3-highgpu-8g", H100_80GB, 8),
    _gcp("a3-megagpu-8g", H100_80GB, 8),
    _gcp("a3-ultragpu-8g", H200, 8),
    _gcp("a4-highgpu-8g", B200, 8),
)

# Other spellings of the same instance type. KAITO calls the ND A100 v4 "Standard_ND96asr_A100_v4".
INSTANCE_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {"Standard_ND96asr_A100_v4": "Standard_ND96asr_v4"}
)


def _instance_index() -> Mapping[str, InstanceType]:
    index = {normalise(instance.name): instance for instance in INSTANCE_TYPES}
    for alias, canonical in INSTANCE_ALIASES.items():
        index[normalise(alias)] = index[normalise(canonical)]
    return MappingProxyType(index)


_INSTANCES: Final = _instance_index()
_PRODUCTS: Final = MappingProxyType({normalise(product.name): product for product in GPU_PRODUCTS})


class UnknownInstanceTypeError(UnknownNameError):
    """An instance type that is not in the catalog."""


class UnknownGpuProductError(UnknownNameError):
    """A GPU product that is not in the catalog."""


def instance_type_names() -> tuple[str, ...]:
    return tuple(instance.name for instance in INSTANCE_TYPES)


def find_instance_type(name: str) -> InstanceType | None:
    """The instance type called `name` (any case, aliases included), or None."""
    return _INSTANCES.get(normalise(name))


def suggest_instance_types(name: str) -> list[str]:
    return close_names(name, {key: instance.name for key, instance in _INSTANCES.items()})


def get_instance_type(name: str) -> InstanceType:
    """The instance type called `name`; raises UnknownInstanceTypeError with close names otherwise."""
    instance = find_instance_type(name)
    if instance is None:
        raise UnknownInstanceTypeError(
            "instance type", name, suggest_instance_types(name), instance_type_names()
        )
    return instance


def find_gpu_product(name: str) -> GpuProduct | None:
    return _PRODUCTS.get(normalise(name))


def get_gpu_product(name: str) -> GpuProduct:
    """The GPU product called `name` (any case); raises UnknownGpuProductError with close names otherwise."""
    product = find_gpu_product(name)
    if product is None:
        suggestions = close_names(name, {key: product.name for key, product in _PRODUCTS.items()})
        raise UnknownGpuProductError(
            "GPU product", name, suggestions, tuple(product.name for product in GPU_PRODUCTS)
        )
    return product


def instance_shape(instance: InstanceType) -> GpuShape:
    """What one node of `instance` offers the planner."""
    return GpuShape(
        gpus_per_node=instance.gpu_count,
        gpu_memory_bytes=instance.gpu.memory_bytes,
        gpu_product=instance.gpu.name,
        instance_type=instance.name,
    )


def shape_for_instance(name: str) -> GpuShape:
    """The node shape of the instance type called `name`; raises UnknownInstanceTypeError if unknown."""
    return instance_shape(get_instance_type(name))


def shape_from_memory(gpus_per_node: int, gpu_memory: str, gpu_product: str = "") -> GpuShape:
    """A node shape for GPUs that are not in the catalog (bring-your-own nodes).

    `gpu_memory` is the memory of ONE GPU, e.g. "80Gi", "80GB" or "94G" (all GiB, see the module docstring).
    Raises ValueError for a GPU count below 1 or memory that cannot be read.
    """
    if gpus_per_node < 1:
        raise ValueError(f"GPUs per node must be at least 1, got {gpus_per_node}")
    return GpuShape(
        gpus_per_node=gpus_per_node, gpu_memory_bytes=parse_memory(gpu_memory), gpu_product=gpu_product
    )
