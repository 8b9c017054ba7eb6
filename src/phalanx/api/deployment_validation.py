"""Checks on a ModelDeployment that need no catalog (the compiler checks names against catalogs)."""

from __future__ import annotations

from collections.abc import Iterator

from phalanx.api.autoscaling_shorthand import validate_deployment_autoscaling
from phalanx.api.errors import UNSET, FieldError
from phalanx.api.modeldeployment import CONNECTORS, Disaggregation, ModelDeployment
from phalanx.api.names import DNS_LABEL_MAX, is_dns1035_label
from phalanx.api.quantity import QuantityError, parse_quantity

_SHAPE_FIX = "give either instanceType (e.g. Standard_ND96isr_H100_v5) or gpusPerNode with gpuMemory"


def validate_model_deployment(md: ModelDeployment) -> list[FieldError]:
    return [
        *_metadata(md),
        *_model(md),
        *_shape(md),
        *_engine(md),
        *_disaggregation(md),
        *validate_deployment_autoscaling(md),
    ]


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


_PD: tuple[str, ...] = ("spec", "disaggregation")


def parse_ratio(text: str) -> tuple[int, int] | None:
    """ "1:3" -> (1, 3): prefill and decode role instances; None unless both are whole numbers >= 1."""
    parts = text.split(":")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        return None
    prefill, decode = (int(part) for part in parts)
    return (prefill, decode) if prefill >= 1 and decode >= 1 else None


def _disaggregation(md: ModelDeployment) -> Iterator[FieldError]:
    pd = md.spec.disaggregation
    if pd is None:
        if md.spec.workload is not None and md.spec.workload.ttft_seconds is not None:
            yield FieldError(
                ("spec", "workload", "ttftSeconds"),
                "sizes the prefill role, which only a disaggregated deployment has",
                value=md.spec.workload.ttft_seconds,
                severity="warning",
                fix="add spec.disaggregation, or remove ttftSeconds",
            )
        return
    yield from _connector(md, pd)
    yield from _sizes(pd)
    for side in ("prefill", "decode"):
        nodes = getattr(pd, side).nodes
        if nodes is not None and md.spec.max_nodes is not None and nodes > md.spec.max_nodes:
            yield FieldError(
                (*_PD, side, "nodes"),
                f"is more than maxNodes ({md.spec.max_nodes})",
                value=nodes,
                fix="raise maxNodes or lower nodes",
            )


def _connector(md: ModelDeployment, pd: Disaggregation) -> Iterator[FieldError]:
    engine = md.spec.engine
    allowed = CONNECTORS[engine]
    if pd.connector is not None and pd.connector not in allowed:
        yield FieldError(
            (*_PD, "connector"),
            f"is not a KV connector of engine {engine}",
            value=pd.connector,
            fix=f"use one of {', '.join(allowed)}",
        )
    connector = pd.connector or allowed[0]
    if connector == "p2pnccl":
        yield _p2pnccl_image(md)
    if connector == "p2pnccl" and not _host_port(pd.proxy):
        yield FieldError(
            (*_PD, "proxy"),
            "is required with connector p2pnccl as host:port"
            if pd.proxy is None
            else "must be host:port with a port from 1 to 65535",
            value=pd.proxy if pd.proxy is not None else UNSET,
            fix="give the address P2pNcclConnector engines register with, e.g. 'pd-proxy.default:30001'",
        )
    elif pd.proxy is not None and connector != "p2pnccl":
        yield FieldError(
            (*_PD, "proxy"),
            f"applies only to connector p2pnccl (connector is {connector})",
            value=pd.proxy,
            severity="warning",
            fix="remove it",
        )


def _p2pnccl_image(md: ModelDeployment) -> FieldError:
    """vLLM 0.33.0, the default image, no longer ships P2pNcclConnector: the engine would not start."""
    if md.spec.image is None:
        return FieldError(
            (*_PD, "connector"),
            "p2pnccl needs vLLM's P2pNcclConnector, which the default image (vLLM 0.33.0) does not ship",
            value="p2pnccl",
            fix="use nixl or lmcache, or set spec.image to a vLLM image that still has P2pNcclConnector",
        )
    return FieldError(
        (*_PD, "connector"),
        "p2pnccl needs an image whose vLLM ships P2pNcclConnector (vLLM 0.33.0 does not)",
        value="p2pnccl",
        severity="warning",
        fix="check the image's vLLM version, or use nixl",
    )


def _host_port(text: str | None) -> bool:
    if not text:
        return False
    host, _, port = text.rpartition(":")
    return bool(host) and " " not in host and port.isdigit() and 1 <= int(port) <= 65535


def _sizes(pd: Disaggregation) -> Iterator[FieldError]:
    given = [side for side in ("prefill", "decode") if getattr(pd, side).replicas is not None]
    if pd.ratio is not None:
        if given:
            yield FieldError(
                (*_PD, "ratio"),
                f"cannot be combined with {' and '.join(f'{side}.replicas' for side in given)}",
                value=pd.ratio,
                fix="give either ratio or both prefill.replicas and decode.replicas",
            )
        if parse_ratio(pd.ratio) is None:
            yield FieldError(
                (*_PD, "ratio"),
                "must be 'prefill:decode', two whole numbers of at least 1",
                value=pd.ratio,
                fix="e.g. '1:3' for one prefill and three decode role instances per ServingGroup",
            )
    elif len(given) == 1:
        missing = "decode" if given[0] == "prefill" else "prefill"
        yield FieldError(
            (*_PD, missing, "replicas"),
            f"is required with {given[0]}.replicas",
            fix=f"give {missing}.replicas too, or neither (the planner then proposes the ratio)",
        )
