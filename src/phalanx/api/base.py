"""Shared pieces of the resource models: camelCase field names, object metadata, conditions."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

_PERCENT = re.compile(r"^(\d+)%$")


class ApiModel(BaseModel):
    """Kubernetes-style model: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        validate_default=True,
    )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _int_or_percent(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "int_or_percent",
            "must be a whole number or a percentage",
            {"fix": "write a number such as 1 or a percentage such as '25%'"},
        )
    if isinstance(value, int):
        if value < 0:
            raise PydanticCustomError(
                "int_or_percent", "must not be negative", {"fix": "use 0 or a positive number"}
            )
        return value
    match = _PERCENT.match(value.strip())
    if not match:
        raise PydanticCustomError(
            "int_or_percent",
            "is not a number or a percentage",
            {"fix": "write a number such as 1 or a percentage such as '25%'"},
        )
    if int(match.group(1)) > 100:
        raise PydanticCustomError(
            "int_or_percent", "must not be more than 100%", {"fix": "use a percentage between 0% and 100%"}
        )
    return value.strip()


IntOrPercent = Annotated[int | str, BeforeValidator(_int_or_percent)]
"""Kubernetes IntOrString restricted to what rollout settings accept: n >= 0 or 'n%' (0-100)."""


def scaled_value(value: int | str, total: int, *, round_up: bool) -> int:
    """Resolve an int-or-percent against `total` (Kubernetes' GetScaledValueFromIntOrPercent)."""
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    product = percent * total
    return -(-product // 100) if round_up else product // 100


class ObjectMeta(ApiModel):
    name: str = ""
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Set by the API server; accepted so objects read back from a cluster validate.
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    generate_name: str | None = None
    owner_references: list[dict[str, Any]] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[dict[str, Any]] | None = None
    self_link: str | None = None


class Condition(ApiModel):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int | None = None
