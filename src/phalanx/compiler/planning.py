"""Plan a ModelDeployment: its spec as a PlanRequest, the planner's refusal as a problem on a spec field."""

from __future__ import annotations

from phalanx import planner
from phalanx.api.errors import FieldError, Path
from phalanx.api.modeldeployment import ModelDeployment
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


def planning_problem(md: ModelDeployment, exc: PlanningError) -> FieldError:
    fixes = "; or ".join(reword(fix, SPEC_FIELDS) for fix in exc.fixes)
    return FieldError(
        _path(md, exc.field),
        reword(exc.message, SPEC_FIELDS),
        fix=fixes or "choose a larger GPU shape",
    )


def plan_deployment(
    md: ModelDeployment, model: ModelArchitecture, shape: GpuShape
) -> tuple[Plan | None, list[FieldError]]:
    spec = md.spec
    request = PlanRequest(
        model=model,
        shape=shape,
        max_nodes=spec.max_nodes,
        nodes=spec.nodes,
        max_model_len=spec.max_model_len,
        dtype=spec.dtype,
        gpu_memory_utilization=spec.gpu_memory_utilization,
        tensor_parallel_size=spec.tensor_parallel_size,
        data_parallel_size=spec.data_parallel_size,
    )
    try:
        return planner.make_plan(request), []
    except PlanningError as exc:
        return None, [planning_problem(md, exc)]
