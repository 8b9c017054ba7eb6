"""Compile a ModelDeployment into a ModelServing: resolve the model and GPU shape from the
catalogs, plan the parallelism, and let the engine recipe write the pod templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phalanx import planner
from phalanx.api import labels as L
from phalanx.api.errors import FieldError, SpecError
from phalanx.api.modeldeployment import ModelArchitectureSpec, ModelDeployment
from phalanx.api.modelserving import ModelServing
from phalanx.api.validation import validate_model_serving
from phalanx.engines import DEFAULT_IMAGES, RECIPES, EngineInputs
from phalanx.planner.types import MLA, GpuShape, ModelArchitecture, MoE, Plan, PlanningError, PlanRequest

ENGINE_ROLE = "engine"
DEPLOYMENT_LABEL = f"{L.API_GROUP}/deployment"
PLAN_ANNOTATION = f"{L.API_GROUP}/plan"


@dataclass(frozen=True)
class Compiled:
    model_serving: ModelServing
    plan: Plan
    warnings: list[FieldError] = field(default_factory=list)


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


def resolve_model(md: ModelDeployment) -> ModelArchitecture:
    ref = md.spec.model
    if ref.architecture is not None:
        return _architecture(ref.architecture, ref.name)
    found = planner.find_model(ref.name)
    if found is not None:
        return found
    close = planner.suggest_models(ref.name)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise SpecError(
        [
            FieldError(
                ("spec", "model", "name"),
                "is not in the model catalog",
                value=ref.name,
                fix=f"{hint}use a catalog name (phalanx plan --list-models), or give spec.model.architecture "
                "with the numbers from the model's config.json",
            )
        ]
    )


def resolve_shape(md: ModelDeployment) -> GpuShape:
    spec = md.spec
    if spec.instance_type:
        if planner.find_instance_type(spec.instance_type) is None:
            close = planner.suggest_instance_types(spec.instance_type)
            hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            raise SpecError(
                [
                    FieldError(
                        ("spec", "instanceType"),
                        "is not in the instance catalog",
                        value=spec.instance_type,
                        fix=f"{hint}or describe the node with gpusPerNode, gpuMemory and gpuProduct",
                    )
                ]
            )
        return planner.shape_for_instance(spec.instance_type)
    assert spec.gpus_per_node is not None and spec.gpu_memory is not None
    try:
        return planner.shape_from_memory(spec.gpus_per_node, spec.gpu_memory, spec.gpu_product or "custom")
    except ValueError as exc:
        raise SpecError(
            [
                FieldError(
                    ("spec", "gpuMemory"),
                    str(exc),
                    value=spec.gpu_memory,
                    fix="write memory per GPU like '80Gi'",
                )
            ]
        ) from None


def plan_deployment(md: ModelDeployment, model: ModelArchitecture | None = None) -> Plan:
    spec = md.spec
    request = PlanRequest(
        model=model or resolve_model(md),
        shape=resolve_shape(md),
        max_nodes=spec.max_nodes,
        nodes=spec.nodes,
        max_model_len=spec.max_model_len,
        dtype=spec.dtype,
        gpu_memory_utilization=spec.gpu_memory_utilization,
    )
    try:
        return planner.make_plan(request)
    except PlanningError as exc:
        raise SpecError(
            [
                FieldError(
                    ("spec",),
                    exc.message,
                    fix="; or ".join(exc.fixes) if exc.fixes else "choose a larger GPU shape",
                )
            ]
        ) from None


def _template(pod_template: dict[str, Any], md: ModelDeployment) -> dict[str, Any]:
    spec = pod_template["spec"]
    if md.spec.node_selector:
        spec["nodeSelector"] = dict(md.spec.node_selector)
    if md.spec.tolerations:
        spec["tolerations"] = [dict(t) for t in md.spec.tolerations]
    return pod_template


def compile_deployment(md: ModelDeployment) -> Compiled:
    """ModelDeployment -> (ModelServing, plan); a SpecError names the field to change."""
    model = resolve_model(md)
    plan = plan_deployment(md, model)
    spec = md.spec
    inputs = EngineInputs(
        plan=plan,
        model_id=model.hf_id,
        served_name=spec.model.served_name or spec.model.name,
        image=spec.image or DEFAULT_IMAGES[spec.engine],
        launcher=spec.launcher,
        engine_args=tuple(spec.engine_args),
        env=tuple(spec.env),
        model_access_secret=spec.model_access_secret,
        model_revision=spec.model.revision,
    )
    recipe = RECIPES[spec.engine](inputs, native_dtype_fp8=model.native_dtype == "fp8")
    role: dict[str, Any] = {
        "name": ENGINE_ROLE,
        "replicas": 1,
        "entryTemplate": _template(recipe.entry, md),
        "workerReplicas": recipe.worker_replicas,
    }
    if recipe.worker is not None:
        role["workerTemplate"] = _template(recipe.worker, md)
    metadata: dict[str, Any] = {
        "name": md.name,
        "namespace": md.metadata.namespace,
        "labels": {DEPLOYMENT_LABEL: md.name},
        "annotations": {
            PLAN_ANNOTATION: (
                f"{plan.nodes} node(s) x {plan.gpus_per_node} {plan.gpu_product or 'GPU'}, "
                f"{plan.layout}, "
                f"{plan.dtype}, maxModelLen {plan.max_model_len},"
                f" KV {plan.kv_cache_tokens} tokens per replica"
            )
        },
    }
    serving_spec: dict[str, Any] = {
        "replicas": spec.replicas,
        "schedulerName": spec.scheduler_name,
        "recoveryPolicy": spec.recovery_policy,
        "template": {"roles": [role]},
    }
    if spec.rollout_strategy is not None:
        serving_spec["rolloutStrategy"] = spec.rollout_strategy.to_dict()
    ms = ModelServing.model_validate({"metadata": metadata, "spec": serving_spec})
    compiled_errors = [p for p in validate_model_serving(ms) if p.severity == "error"]
    if compiled_errors:
        raise SpecError(
            [
                FieldError(p.path, f"in the generated ModelServing: {p.message}", fix=p.fix, value=p.value)
                for p in compiled_errors
            ]
        )
    warnings = [
        FieldError(("spec",), message, severity="warning", fix="check the plan")
        for message in (*plan.warnings, *recipe.notes)
    ]
    return Compiled(model_serving=ms, plan=plan, warnings=warnings)
