"""Compile a ModelDeployment into a ModelServing: resolve the model and GPU shape from the
catalogs (or the model's config.json), plan the parallelism, and let the engine recipe write the pod
templates. Every problem of every step is collected, each on the field it is about."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phalanx.api import labels as L
from phalanx.api.deployment_validation import validate_model_deployment
from phalanx.api.errors import FieldError, SpecError, only_errors
from phalanx.api.modeldeployment import ModelDeployment
from phalanx.api.modelserving import ModelServing
from phalanx.api.validation import validate_model_serving
from phalanx.compiler.planning import plan_deployment, plan_warnings
from phalanx.compiler.resolve import resolve_model, resolve_shape
from phalanx.engines import DEFAULT_IMAGES, RECIPES, EngineInputs
from phalanx.planner.types import ModelArchitecture, Plan

ENGINE_ROLE = "engine"
DEPLOYMENT_LABEL = f"{L.API_GROUP}/deployment"
PLAN_ANNOTATION = f"{L.API_GROUP}/plan"


@dataclass(frozen=True)
class Compiled:
    model_serving: ModelServing
    plan: Plan
    warnings: list[FieldError] = field(default_factory=list)


def _template(pod_template: dict[str, Any], md: ModelDeployment) -> dict[str, Any]:
    spec = pod_template["spec"]
    if md.spec.node_selector:
        spec["nodeSelector"] = dict(md.spec.node_selector)
    if md.spec.tolerations:
        spec["tolerations"] = [dict(t) for t in md.spec.tolerations]
    return pod_template


def _serving(
    md: ModelDeployment, model: ModelArchitecture, plan: Plan
) -> tuple[ModelServing, list[FieldError]]:
    """The ModelServing of a plan, and the notes of its engine recipe (as warnings)."""
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
                f"{plan.layout}, {plan.dtype}, maxModelLen {plan.max_model_len},"
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
    notes = [FieldError(("spec",), note, severity="warning", fix="check the plan") for note in recipe.notes]
    return ms, notes


def _generated_problems(ms: ModelServing) -> list[FieldError]:
    return [
        FieldError(p.path, f"in the generated ModelServing: {p.message}", fix=p.fix, value=p.value)
        for p in validate_model_serving(ms)
        if p.severity == "error"
    ]


def _compile(md: ModelDeployment) -> tuple[Compiled | None, list[FieldError]]:
    """The compiled deployment (None when any step fails) and every problem found, warnings included."""
    model, problems = resolve_model(md)
    shape, shape_problems = resolve_shape(md)
    problems += shape_problems
    if model is None or shape is None:
        return None, problems
    plan, plan_problems = plan_deployment(md, model, shape)
    problems += plan_problems
    if plan is None:
        return None, problems
    problems += plan_warnings(plan)
    ms, notes = _serving(md, model, plan)
    problems += notes + _generated_problems(ms)
    if any(p.severity == "error" for p in problems):
        return None, problems
    return Compiled(model_serving=ms, plan=plan, warnings=problems), problems


def deployment_problems(resource: ModelServing | ModelDeployment) -> list[FieldError]:
    """Every problem compiling a ModelDeployment would meet (catalog lookups, config.json, planning),
    warnings too; none for a ModelServing.

    `phalanx.api.load_text(..., check=deployment_problems)` runs it with the API validation, so that a
    file's ModelDeployment problems all come back at once, each with its line.
    """
    return _compile(resource)[1] if isinstance(resource, ModelDeployment) else []


def compile_deployment(md: ModelDeployment) -> Compiled:
    """ModelDeployment -> (ModelServing, plan); a SpecError carries every error, each on its field."""
    compiled, problems = _compile(md)
    if compiled is None:
        # Nothing to compile from and nothing said why: a spec that skipped the API validation.
        errors = only_errors(problems) or only_errors(validate_model_deployment(md))
        raise SpecError(errors)
    return compiled
