"""A ModelDeployment's model and GPU shape, looked up in the catalogs or read from the spec.

Each function returns what it found (or None) and every problem, each naming its field, so that one run
reports all of them. Problems the API validation already reports (a missing shape) are not repeated.
"""

from __future__ import annotations

from phalanx import planner
from phalanx.api.errors import UNSET, FieldError, Path
from phalanx.api.modeldeployment import ModelArchitectureSpec, ModelDeployment
from phalanx.planner.hf_config import UNSET as NO_VALUE
from phalanx.planner.hf_config import ConfigProblem, architecture_from_config
from phalanx.planner.types import MLA, GpuShape, ModelArchitecture, MoE

CONFIG_PATH: Path = ("spec", "model", "config")


def _architecture(spec: ModelArchitectureSpec, name: str) -> ModelArchitecture:
    moe = None
    if spec.num_experts:
        moe = MoE(
            num_experts=spec.num_experts,
            experts_per_token=spec.num_experts_per_token or 1,
            moe_intermediate_size=spec.moe_intermediate_size or spec.intermediate_size,
        )
    mla = None
    if spec.kv_lora_rank and spec.qk_rope_head_dim:
        mla = MLA(kv_lora_rank=spec.kv_lora_rank, qk_rope_head_dim=spec.qk_rope_head_dim)
    return ModelArchitecture(
        name=name,
        hf_id=name,
        num_layers=spec.num_hidden_layers,
        hidden_size=spec.hidden_size,
        num_attention_heads=spec.num_attention_heads,
        num_kv_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim or spec.hidden_size // spec.num_attention_heads,
        intermediate_size=spec.intermediate_size,
        vocab_size=spec.vocab_size,
        num_params=spec.num_parameters,
        max_context=spec.max_position_embeddings,
        native_dtype=spec.dtype,
        tied_embeddings=spec.tie_word_embeddings,
        moe=moe,
        mla=mla,
    )


def config_problem(problem: ConfigProblem, prefix: Path = CONFIG_PATH) -> FieldError:
    """A config.json problem as a spec problem (under spec.model.config unless `prefix` says otherwise)."""
    return FieldError(
        (*prefix, *problem.path),
        problem.message,
        fix=problem.fix,
        value=UNSET if problem.value is NO_VALUE else problem.value,
        severity=problem.severity,
    )


def resolve_model(md: ModelDeployment) -> tuple[ModelArchitecture | None, list[FieldError]]:
    """The model from spec.model.config, spec.model.architecture or the catalog, and its problems."""
    ref = md.spec.model
    if ref.config is not None:
        if ref.architecture is not None:
            return None, []  # the API validation says to keep one of the two
        parsed = architecture_from_config(ref.config, ref.name)
        return parsed.model, [config_problem(problem) for problem in parsed.problems]
    if ref.architecture is not None:
        return _architecture(ref.architecture, ref.name), []
    found = planner.find_model(ref.name)
    if found is not None:
        return found, []
    close = planner.suggest_models(ref.name)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    error = FieldError(
        ("spec", "model", "name"),
        "is not in the model catalog",
        value=ref.name,
        fix=f"{hint}use a catalog name (phalanx plan --list), or give spec.model.config:"
        " the model's config.json as written",
    )
    return None, [error]


def resolve_shape(md: ModelDeployment) -> tuple[GpuShape | None, list[FieldError]]:
    """The node shape from spec.instanceType or gpusPerNode + gpuMemory (+ gpuProduct)."""
    spec = md.spec
    if spec.instance_type:
        if spec.gpus_per_node is not None or spec.gpu_memory is not None:
            return None, []  # both ways of saying it: the API validation reports it
        if planner.find_instance_type(spec.instance_type) is None:
            close = planner.suggest_instance_types(spec.instance_type)
            describe = "describe the node with gpusPerNode, gpuMemory and gpuProduct (phalanx plan --list)"
            fix = (
                f"use {' or '.join(repr(c) for c in close)}, or {describe}"
                if close
                else describe[0].upper() + describe[1:]
            )
            error = FieldError(
                ("spec", "instanceType"), "is not in the instance catalog", value=spec.instance_type, fix=fix
            )
            return None, [error]
        return planner.shape_for_instance(spec.instance_type), []
    if spec.gpus_per_node is None or spec.gpu_memory is None:
        return None, []  # no complete shape: the API validation reports what is missing
    try:
        return planner.shape_from_memory(
            spec.gpus_per_node, spec.gpu_memory, spec.gpu_product or "custom"
        ), []
    except ValueError as exc:
        error = FieldError(
            ("spec", "gpuMemory"), str(exc), value=spec.gpu_memory, fix="write memory per GPU like '80Gi'"
        )
        return None, [error]
