"""Plan a ModelDeployment: its spec as a PlanRequest, the planner's refusal as a problem on a spec field."""

from __future__ import annotations

from dataclasses import replace

from phalanx import planner
from phalanx.api.deployment_validation import parse_ratio
from phalanx.api.errors import FieldError, Path
from phalanx.api.modeldeployment import Disaggregation, ModelDeployment
from phalanx.planner.disaggregation import (
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    PdPlan,
    PdRequest,
    SidePlanningError,
    Workload,
    plan_disaggregated,
)
from phalanx.planner.types import GpuShape, ModelArchitecture, Plan, PlanningError, PlanRequest
from phalanx.planner.wording import reword

# The planner's request fields, as a ModelDeployment spells them.
SPEC_FIELDS = {
    "nodes": "nodes",
    "max_nodes": "maxNodes",
    "max_model_len": "maxModelLen",
    "dtype": "dtype",
    "gpu_memory_utilization": "gpuMemoryUtilization",
    "tensor_parallel_size": "tensorParallelSize",
    "data_parallel_size": "dataParallelSize",
}


def _path(md: ModelDeployment, field: str | None) -> Path:
    """The spec field a planning error is about; without one, the GPU shape the model does not fit."""
    if field is not None:
        return ("spec", SPEC_FIELDS[field])
    return ("spec", "instanceType") if md.spec.instance_type else ("spec", "gpusPerNode")


def plan_warnings(plan: Plan) -> list[FieldError]:
    return [
        FieldError(("spec",), reword(warning, SPEC_FIELDS), severity="warning", fix="check the plan")
        for warning in plan.warnings
    ]


def pd_warnings(md: ModelDeployment, pd: PdPlan) -> list[FieldError]:
    """A disaggregated plan's warnings, each on the field it is about."""
    sides = [
        FieldError(
            ("spec",),
            f"{side} role: {reword(warning, SPEC_FIELDS)}",
            severity="warning",
            fix="check the plan",
        )
        for side, plan in (("prefill", pd.prefill), ("decode", pd.decode))
        for warning in plan.warnings
    ]
    verdicts = [
        FieldError(
            ("spec", "disaggregation"),
            warning,
            severity="warning",
            fix="serve aggregated (remove spec.disaggregation), or declare spec.workload's real lengths",
        )
        for warning in pd.warnings
    ]
    if not pd.workload.declared and md.spec.disaggregation is not None and pd.replicas == pd.proposed:
        verdicts.append(
            FieldError(
                ("spec", "workload"),
                f"is not declared: the prefill:decode ratio {pd.proposed[0]}:{pd.proposed[1]} assumes"
                f" prompts of {pd.workload.prompt_tokens} and outputs of {pd.workload.output_tokens} tokens",
                severity="warning",
                fix="declare promptTokens and outputTokens, or give the ratio or both replicas",
            )
        )
    return list(dict.fromkeys(sides)) + verdicts


def planning_problem(md: ModelDeployment, exc: PlanningError) -> FieldError:
    fixes = "; or ".join(reword(fix, SPEC_FIELDS) for fix in exc.fixes)
    return FieldError(
        _path(md, exc.field),
        reword(exc.message, SPEC_FIELDS),
        fix=fixes or "choose a larger GPU shape",
    )


def plan_request(md: ModelDeployment, model: ModelArchitecture, shape: GpuShape) -> PlanRequest:
    spec = md.spec
    return PlanRequest(
        model=model,
        shape=shape,
        max_nodes=spec.max_nodes,
        nodes=spec.nodes,
        max_model_len=spec.max_model_len,
        dtype=spec.dtype,
        gpu_memory_utilization=spec.gpu_memory_utilization,
        tensor_parallel_size=spec.tensor_parallel_size,
        data_parallel_size=spec.data_parallel_size,
        memory_model="sglang" if spec.engine == "sglang" else "vllm",
    )


def plan_deployment(
    md: ModelDeployment, model: ModelArchitecture, shape: GpuShape
) -> tuple[Plan | None, list[FieldError]]:
    try:
        return planner.make_plan(plan_request(md, model, shape)), []
    except PlanningError as exc:
        return None, [planning_problem(md, exc)]


def _workload(md: ModelDeployment) -> Workload:
    work = md.spec.workload
    if work is None:
        return Workload()
    return Workload(
        prompt_tokens=work.prompt_tokens or DEFAULT_PROMPT_TOKENS,
        output_tokens=work.output_tokens or DEFAULT_OUTPUT_TOKENS,
        ttft_seconds=work.ttft_seconds,
        declared=work.prompt_tokens is not None and work.output_tokens is not None,
    )


def pd_request(md: ModelDeployment, pd: Disaggregation, base: PlanRequest) -> PdRequest:
    spec = md.spec
    sides = [
        replace(
            base,
            nodes=side.nodes or spec.nodes,
            tensor_parallel_size=side.tensor_parallel_size or spec.tensor_parallel_size,
        )
        for side in (pd.prefill, pd.decode)
    ]
    replicas = None
    if pd.prefill.replicas is not None and pd.decode.replicas is not None:
        replicas = (pd.prefill.replicas, pd.decode.replicas)
    ratio = parse_ratio(pd.ratio) if pd.ratio is not None else None
    return PdRequest(
        prefill=sides[0], decode=sides[1], workload=_workload(md), replicas=replicas, ratio=ratio
    )


def _side_problem(md: ModelDeployment, pd: Disaggregation, exc: SidePlanningError) -> FieldError:
    problem = planning_problem(md, exc.error)
    side = pd.prefill if exc.side == "prefill" else pd.decode
    pinned = {"nodes": side.nodes, "tensor_parallel_size": side.tensor_parallel_size}
    path = problem.path
    if exc.error.field in pinned and pinned[exc.error.field] is not None:
        path = ("spec", "disaggregation", exc.side, SPEC_FIELDS[exc.error.field])
    return FieldError(path, f"{exc.side} role: {problem.message}", fix=problem.fix)


def plan_pd_deployment(
    md: ModelDeployment, pd: Disaggregation, model: ModelArchitecture, shape: GpuShape
) -> tuple[PdPlan | None, list[FieldError]]:
    """Both sides of a disaggregated deployment and their ratio, or the problem of the side that fails."""
    try:
        return plan_disaggregated(pd_request(md, pd, plan_request(md, model, shape))), []
    except SidePlanningError as exc:
        return None, [_side_problem(md, pd, exc)]
