"""Compile a ModelDeployment into a ModelServing: resolve the model and GPU shape from the
catalogs (or the model's config.json), plan the parallelism, and let the engine recipe write the pod
templates. Every problem of every step is collected, each on the field it is about."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from phalanx.api import labels as L
from phalanx.api.autoscaling_shorthand import autoscaling_policy_for
from phalanx.api.autoscalingpolicy import AutoscalingPolicy
from phalanx.api.deployment_validation import validate_model_deployment
from phalanx.api.errors import FieldError, SpecError, only_errors
from phalanx.api.modeldeployment import CONNECTORS, Disaggregation, ModelDeployment
from phalanx.api.modelserving import ModelServing
from phalanx.api.validation import validate_model_serving
from phalanx.compiler.planning import pd_warnings, plan_deployment, plan_pd_deployment, plan_warnings
from phalanx.compiler.resolve import resolve_model, resolve_shape
from phalanx.engines import DEFAULT_IMAGES, RECIPES, EngineInputs
from phalanx.engines.recipe import ArgProblem, PdKind, PdRole, RoleRecipe
from phalanx.planner.disaggregation import PdPlan
from phalanx.planner.memory import kv_bytes_per_token
from phalanx.planner.types import ModelArchitecture, Plan

ENGINE_ROLE = "engine"
DEPLOYMENT_LABEL = f"{L.API_GROUP}/deployment"
PLAN_ANNOTATION = f"{L.API_GROUP}/plan"


@dataclass(frozen=True)
class Compiled:
    model_serving: ModelServing
    plan: Plan  # disaggregated: the decode side's, its arithmetic and warnings covering both sides
    warnings: list[FieldError] = field(default_factory=list)
    pd: PdPlan | None = None
    # spec.autoscaling's AutoscalingPolicy for model_serving; None without autoscaling.
    autoscaling_policy: AutoscalingPolicy | None = None


def _template(pod_template: dict[str, Any], md: ModelDeployment) -> dict[str, Any]:
    spec = pod_template["spec"]
    if md.spec.node_selector:
        spec["nodeSelector"] = dict(md.spec.node_selector)
    if md.spec.tolerations:
        spec["tolerations"] = [dict(t) for t in md.spec.tolerations]
    return pod_template


def _recipe(
    md: ModelDeployment, model: ModelArchitecture, plan: Plan, pd: PdRole | None = None
) -> RoleRecipe:
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
        pd=pd,
    )
    return RECIPES[spec.engine](inputs, native_dtype_fp8=model.native_dtype == "fp8")


def _role(
    md: ModelDeployment, name: str, replicas: int, recipe: RoleRecipe, pd: PdRole | None = None
) -> dict[str, Any]:
    role: dict[str, Any] = {
        "name": name,
        "replicas": replicas,
        "entryTemplate": _template(recipe.entry, md),
        "workerReplicas": recipe.worker_replicas,
    }
    if recipe.worker is not None:
        role["workerTemplate"] = _template(recipe.worker, md)
    if pd is not None:
        role["disaggregation"] = _role_disaggregation(md, pd)
    return role


def _role_disaggregation(md: ModelDeployment, pd: PdRole) -> dict[str, Any]:
    """The role's side, stated rather than left to be read from the engine flags (they agree)."""
    sglang = md.spec.engine == "sglang"
    declared: dict[str, Any] = {"kind": pd.kind, "protocol": "sglang" if sglang else "vllm"}
    if sglang and pd.kind == "prefill":
        declared["bootstrapPort"] = pd.bootstrap_port
    return declared


def _summary(plan: Plan) -> str:
    return (
        f"{plan.nodes} node(s) x {plan.gpus_per_node} {plan.gpu_product or 'GPU'}, "
        f"{plan.layout}, {plan.dtype}, maxModelLen {plan.max_model_len},"
        f" KV {plan.kv_cache_tokens} tokens per replica"
    )


def _pd_role(disaggregation: Disaggregation, engine: str, kind: PdKind, model: ModelArchitecture) -> PdRole:
    connector = disaggregation.connector or CONNECTORS[engine][0]
    return PdRole(
        kind=kind,
        connector=connector,
        proxy=disaggregation.proxy,
        kv_bytes_per_token=kv_bytes_per_token(model, 1, 1),
    )


def _roles(
    md: ModelDeployment, model: ModelArchitecture, plan: Plan | PdPlan
) -> tuple[list[dict[str, Any]], str, list[str], list[ArgProblem]]:
    """The roles of the group template, the plan annotation, the recipes' notes and refusals."""
    if isinstance(plan, PdPlan) and md.spec.disaggregation is not None:
        return _pd_roles(md, md.spec.disaggregation, model, plan)
    assert isinstance(plan, Plan), "a PdPlan comes only from a deployment with disaggregation"
    recipe = _recipe(md, model, plan)
    return [_role(md, ENGINE_ROLE, 1, recipe)], _summary(plan), list(recipe.notes), list(recipe.refused)


def _pd_roles(
    md: ModelDeployment, disaggregation: Disaggregation, model: ModelArchitecture, plan: PdPlan
) -> tuple[list[dict[str, Any]], str, list[str], list[ArgProblem]]:
    roles: list[dict[str, Any]] = []
    notes: list[str] = []
    refused: list[ArgProblem] = []
    sides: list[tuple[PdKind, Plan, int]] = [
        ("prefill", plan.prefill, plan.replicas[0]),
        ("decode", plan.decode, plan.replicas[1]),
    ]
    for kind, side, replicas in sides:
        pd = _pd_role(disaggregation, md.spec.engine, kind, model)
        recipe = _recipe(md, model, side, pd)
        roles.append(_role(md, kind, replicas, recipe, pd))
        notes += [f"{kind} role: {note}" for note in recipe.notes]
        refused += recipe.refused  # both sides get the same engineArgs
    summary = (
        f"{plan.replicas[0]} prefill x ({_summary(plan.prefill)});"
        f" {plan.replicas[1]} decode x ({_summary(plan.decode)})"
    )
    return roles, summary, list(dict.fromkeys(notes)), list(dict.fromkeys(refused))


def _serving(
    md: ModelDeployment, model: ModelArchitecture, plan: Plan | PdPlan
) -> tuple[ModelServing, list[FieldError], list[FieldError]]:
    """The ModelServing of a plan, the engineArgs its recipes refuse (errors) and their notes (warnings)."""
    spec = md.spec
    roles, summary, recipe_notes, refused = _roles(md, model, plan)
    template: dict[str, Any] = {"roles": roles}
    if md.spec.disaggregation is not None:
        template["disaggregation"] = {"pairing": md.spec.disaggregation.pairing}
    metadata: dict[str, Any] = {
        "name": md.name,
        "namespace": md.metadata.namespace,
        "labels": {DEPLOYMENT_LABEL: md.name},
        "annotations": {PLAN_ANNOTATION: summary},
    }
    serving_spec: dict[str, Any] = {
        "replicas": spec.replicas,
        "schedulerName": spec.scheduler_name,
        "recoveryPolicy": spec.recovery_policy,
        "template": template,
    }
    if spec.rollout_strategy is not None:
        serving_spec["rolloutStrategy"] = spec.rollout_strategy.to_dict()
    ms = ModelServing.model_validate({"metadata": metadata, "spec": serving_spec})
    notes = [FieldError(("spec",), note, severity="warning", fix="check the plan") for note in recipe_notes]
    errors = [
        FieldError(("spec", "engineArgs", p.index), p.message, value=p.token, fix=p.fix) for p in refused
    ]
    return ms, errors, notes


def combined_plan(pd: PdPlan) -> Plan:
    """One Plan that tells both sides: the decode side's figures, every line and warning of both."""
    lines = (
        "prefill role instance:",
        *(f"  {line}" for line in pd.prefill.arithmetic),
        "decode role instance:",
        *(f"  {line}" for line in pd.decode.arithmetic),
        *pd.lines,
    )
    warnings = tuple(
        dict.fromkeys(
            [f"prefill role: {w}" for w in pd.prefill.warnings]
            + [f"decode role: {w}" for w in pd.decode.warnings]
            + list(pd.warnings)
        )
    )
    return replace(pd.decode, arithmetic=lines, warnings=warnings)


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
    pd: PdPlan | None = None
    if md.spec.disaggregation is not None:
        pd, plan_problems = plan_pd_deployment(md, md.spec.disaggregation, model, shape)
        plan = combined_plan(pd) if pd is not None else None
    else:
        plan, plan_problems = plan_deployment(md, model, shape)
    problems += plan_problems
    if plan is None:
        return None, problems
    problems += pd_warnings(md, pd) if pd is not None else plan_warnings(plan)
    ms, refused, notes = _serving(md, model, pd or plan)
    # A refused engineArg also shows in the generated pods' flags: say it once, on the item.
    problems += notes + (refused or _generated_problems(ms))
    if any(p.severity == "error" for p in problems):
        return None, problems
    policy = autoscaling_policy_for(md, ms.name)
    return Compiled(
        model_serving=ms, plan=plan, warnings=problems, pd=pd, autoscaling_policy=policy
    ), problems


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
