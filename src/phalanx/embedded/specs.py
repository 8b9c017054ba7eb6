"""Spec files to ModelServings for the embedded runtime: validation, then compiling deployments."""

from __future__ import annotations

from dataclasses import dataclass, field

from phalanx.api import FieldError, ModelDeployment, ModelServing, SpecError, load_text
from phalanx.api.autoscalingpolicy import AutoscalingPolicy
from phalanx.compiler import compile_deployment, deployment_problems


@dataclass
class LoadedServings:
    servings: list[ModelServing] = field(default_factory=list)
    # The file's AutoscalingPolicies and those ModelDeployment.spec.autoscaling renders.
    policies: list[AutoscalingPolicy] = field(default_factory=list)
    # (namespace, name) of each ModelServing compiled from a ModelDeployment -> it has spec.autoscaling.
    from_deployments: dict[tuple[str, str], bool] = field(default_factory=dict)
    # Every problem, rendered with its file, line, field, value and fix.
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def servings_from_text(text: str, source: str) -> LoadedServings:
    """Every ModelServing and AutoscalingPolicy a file stands for; a ModelDeployment is planned and
    compiled first."""
    loaded = load_text(text, source, check=deployment_problems)  # planning problems too, with lines
    result = LoadedServings()
    _add(result, loaded.problems, source)
    if loaded.errors:
        return result
    for resource in loaded.resources:
        if isinstance(resource, ModelServing):
            result.servings.append(resource)
        elif isinstance(resource, ModelDeployment):
            try:
                compiled = compile_deployment(resource)  # its warnings came with the file's problems
            except SpecError as exc:
                _add(result, list(exc.errors), source)
                continue
            result.servings.append(compiled.model_serving)
            key = (compiled.model_serving.namespace, compiled.model_serving.name)
            result.from_deployments[key] = resource.spec.autoscaling is not None
            if compiled.autoscaling_policy is not None:
                result.policies.append(compiled.autoscaling_policy)
    result.policies += loaded.policies
    if not result.servings and not result.policies and not result.errors:
        result.errors.append(f"{source}: no ModelServing, ModelDeployment or AutoscalingPolicy in the file")
    return result


def _add(result: LoadedServings, problems: list[FieldError], source: str) -> None:
    for problem in problems:
        target = result.errors if problem.severity == "error" else result.warnings
        target.append(problem.render(source))
