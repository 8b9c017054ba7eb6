"""Checks on a ModelDeployment that need no catalog (the compiler checks names against catalogs)."""

from __future__ import annotations

from collections.abc import Iterator

from phalanx.api.errors import FieldError
from phalanx.api.modeldeployment import ModelDeployment
from phalanx.api.names import DNS_LABEL_MAX, is_dns1035_label
from phalanx.api.quantity import QuantityError, parse_quantity

_SHAPE_FIX = "give either instanceType (e.g. Standard_ND96isr_H100_v5) or gpusPerNode with gpuMemory"


def validate_model_deployment(md: ModelDeployment) -> list[FieldError]:
    return [*_metadata(md), *_model(md), *_shape(md), *_engine(md)]


def _model(md: ModelDeployment) -> Iterator[FieldError]:
    ref = md.spec.model
    if ref.config is not None and ref.architecture is not None:
        yield FieldError(
            ("spec", "model", "architecture"),
            "cannot be combined with config",
            fix="keep config (the model's config.json as written) and remove architecture",
        )


def _metadata(md: ModelDeployment) -> Iterator[FieldError]:
    if not md.metadata.name:
        yield FieldError(("metadata", "name"), "is required", fix="give the ModelDeployment a name")
    elif not is_dns1035_label(md.metadata.name):
        yield FieldError(
            ("metadata", "name"),
            "must be a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, "
            f"at most {DNS_LABEL_MAX} characters",
            value=md.metadata.name,
            fix="use a name like 'llama-70b'",
        )


def _shape(md: ModelDeployment) -> Iterator[FieldError]:
    spec = md.spec
    custom = spec.gpus_per_node is not None or spec.gpu_memory is not None
    if spec.instance_type and custom:
        yield FieldError(
            ("spec", "instanceType"),
            "cannot be combined with gpusPerNode/gpuMemory",
            value=spec.instance_type,
            fix=_SHAPE_FIX,
        )
    elif not spec.instance_type and not custom:
        yield FieldError(("spec", "instanceType"), "is required: no GPU shape given", fix=_SHAPE_FIX)
    elif custom:
        if spec.gpus_per_node is None:
            yield FieldError(
                ("spec", "gpusPerNode"), "is required with gpuMemory", fix="add gpusPerNode, e.g. 8"
            )
        if spec.gpu_memory is None:
            yield FieldError(
                ("spec", "gpuMemory"),
                "is required with gpusPerNode",
                fix="add gpuMemory per GPU, e.g. '80Gi'",
            )
        else:
            try:
                parse_quantity(spec.gpu_memory)
            except QuantityError as exc:
                yield FieldError(
                    ("spec", "gpuMemory"),
                    str(exc),
                    value=spec.gpu_memory,
                    fix="write memory per GPU like '80Gi'",
                )
    if spec.nodes is not None and spec.max_nodes is not None and spec.nodes > spec.max_nodes:
        yield FieldError(
            ("spec", "nodes"),
            f"is more than maxNodes ({spec.max_nodes})",
            value=spec.nodes,
            fix="raise maxNodes or lower nodes",
        )


def _engine(md: ModelDeployment) -> Iterator[FieldError]:
    spec = md.spec
    if spec.engine != "vllm" and "launcher" in md.spec.model_fields_set:
        yield FieldError(
            ("spec", "launcher"),
            f"applies only to engine vllm (engine is {spec.engine})",
            value=spec.launcher,
            severity="warning",
            fix="remove it",
        )
    if spec.image is not None and (" " in spec.image or not spec.image):
        yield FieldError(
            ("spec", "image"),
            "must be an image reference without spaces",
            value=spec.image,
            fix="e.g. vllm/vllm-openai:v0.11.1",
        )
