"""One replica count changed on a stored ModelServing: what `phalanx scale` and the autoscaler both do,
so a scale-down by either drains through the same controller rule."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from phalanx.api.modelserving import ModelServing
from phalanx.api.validation import validate_model_serving


@dataclass(frozen=True)
class ScaleRefused:
    status: int  # the HTTP status `phalanx scale` answers with
    message: str
    param: str


def scaled(ms: ModelServing, replicas: int, role_name: str | None = None) -> ModelServing | ScaleRefused:
    """`ms` with `spec.replicas` (or role `role_name`'s replicas) set to `replicas`, validated."""
    data = ms.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.pop("status", None)
    if role_name is None:
        data["spec"]["replicas"] = replicas
    else:
        roles = data["spec"]["template"]["roles"]
        role = next((r for r in roles if r["name"] == role_name), None)
        if role is None:
            names = ", ".join(r["name"] for r in roles)
            return ScaleRefused(
                404, f"ModelServing {ms.name} has no role {role_name!r} (roles: {names})", "role"
            )
        role["replicas"] = replicas
    try:
        updated = ModelServing.model_validate(data)
    except ValidationError as exc:
        return ScaleRefused(422, f"the scaled spec is invalid: {exc.errors()[0]['msg']}", "replicas")
    problems = [p for p in validate_model_serving(updated) if p.severity == "error"]
    if problems:
        return ScaleRefused(422, "; ".join(p.render() for p in problems), "replicas")
    return updated
