"""The ModelServing resource: `replicas` ServingGroups built from one group template.

Field names follow Kthena's `ModelServing` so its manifests work with only `apiVersion` changed.
Differences, each on purpose:
- `rollingUpdateConfiguration.maxSurge` is kept (Kthena dropped it): surge groups let a rollout
  keep full capacity.
- `workerReplicas` defaults to 0 (Kthena requires it): a role instance of one pod is common.
- Pod templates are validated against the Kubernetes PodSpec schema here, not only on the cluster.
- `plugins` (Kthena's pod plugin chain) is accepted so Kthena's objects read back, but Phalanx runs
  no plugins: validation says what each one would have done.
- `disaggregation` (on a role and on the group template) is ours: it declares a role's
  prefill/decode kind where the engine flags do not, and which prefill and decode pods pair.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import Field, field_validator

from phalanx.api.base import ApiModel, Condition, IntOrPercent, ObjectMeta
from phalanx.api.labels import GANG_SCHEDULER_ANNOTATION

RecoveryPolicy = Literal["ServingGroupRecreate", "RoleRecreate", "None"]
RolloutType = Literal["ServingGroupRollingUpdate", "RoleRollingUpdate"]
TopologyMode = Literal["hard", "soft"]
GangScheduler = Literal["volcano", "coscheduling", "none"]
PdKind = Literal["prefill", "decode"]
PdProtocol = Literal["vllm", "sglang"]
PdPairing = Literal["ModelServing", "ServingGroup"]

VOLCANO_SCHEDULER = "volcano"
COSCHEDULING_SCHEDULER = "scheduler-plugins-scheduler"


class TemplateMetadata(ApiModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodTemplate(ApiModel):
    """A Kubernetes pod template; `spec` is a core/v1 PodSpec, checked against its schema."""

    metadata: TemplateMetadata | None = None
    spec: dict[str, Any]

    @field_validator("spec", mode="before")
    @classmethod
    def _own_copy(cls, value: Any) -> Any:
        # Free-form data is not copied by pydantic; a model must not share it with its input.
        return copy.deepcopy(value)


class NetworkTopologySpec(ApiModel):
    """Volcano's NetworkTopologySpec (HyperNode tiers)."""

    mode: TopologyMode = "hard"
    highest_tier_allowed: int | None = Field(default=None, ge=0)
    highest_tier_name: str | None = Field(default=None, max_length=253)  # a HyperNode name, as in Kthena


class NetworkTopology(ApiModel):
    group_policy: NetworkTopologySpec | None = None
    role_policy: NetworkTopologySpec | None = None


class GangPolicy(ApiModel):
    # Role name -> role instances that must be placed together; unset roles count fully.
    min_role_replicas: dict[str, int] = Field(default_factory=dict)


class RoleDisaggregation(ApiModel):
    """Which side of prefill/decode disaggregation a role serves (Phalanx only)."""

    kind: PdKind | None = None
    protocol: PdProtocol | None = None  # how the router hands a request from prefill to decode
    bootstrap_port: int | None = Field(default=None, ge=1, le=65535)  # SGLang prefill only


class TemplateDisaggregation(ApiModel):
    """Which prefill and decode pods may pair (Phalanx only)."""

    pairing: PdPairing = "ModelServing"


class Role(ApiModel):
    name: str
    replicas: int = Field(default=1, ge=0)
    entry_template: PodTemplate
    worker_replicas: int = Field(default=0, ge=0)
    worker_template: PodTemplate | None = None
    # Kthena inlines the role-level rolling settings; used only with RoleRollingUpdate.
    max_unavailable: IntOrPercent | None = None
    partition: IntOrPercent | None = None
    disaggregation: RoleDisaggregation | None = None

    @property
    def group_size(self) -> int:
        """Pods in one role instance: the entry pod plus its workers."""
        return 1 + self.worker_replicas


class PluginScope(ApiModel):
    """Kthena's plugin scope: role names (none: every role) and a pod target (Entry, Worker or All)."""

    roles: list[str] = Field(default_factory=list)
    target: str = ""


class Plugin(ApiModel):
    """One entry of Kthena's `spec.plugins`: a built-in plugin that edits pods as they are created."""

    name: str
    type: Literal["BuiltIn"] = "BuiltIn"
    config: Any = None  # opaque JSON, read by the plugin
    scope: PluginScope | None = None


class ServingGroupTemplate(ApiModel):
    restart_grace_period_seconds: int = Field(default=0, ge=0)
    gang_policy: GangPolicy | None = None
    network_topology: NetworkTopology | None = None
    disaggregation: TemplateDisaggregation | None = None
    roles: list[Role] = Field(min_length=1)

    def role(self, name: str) -> Role | None:
        return next((role for role in self.roles if role.name == name), None)


class RollingUpdateConfiguration(ApiModel):
    max_unavailable: IntOrPercent = 1
    max_surge: IntOrPercent = 0
    partition: IntOrPercent = 0


class RolloutStrategy(ApiModel):
    type: RolloutType = "ServingGroupRollingUpdate"
    rolling_update_configuration: RollingUpdateConfiguration | None = None


class ModelServingSpec(ApiModel):
    replicas: int = Field(default=1, ge=0)
    scheduler_name: str = VOLCANO_SCHEDULER
    recovery_policy: RecoveryPolicy = "RoleRecreate"
    rollout_strategy: RolloutStrategy = Field(default_factory=RolloutStrategy)
    plugins: list[Plugin] | None = None
    template: ServingGroupTemplate

    @property
    def rolling_update(self) -> RollingUpdateConfiguration:
        """The group-level rollout settings in force: none under RoleRollingUpdate, which rolls
        role instances with each role's own settings (a rollingUpdateConfiguration is then ignored)."""
        if self.rollout_strategy.type == "RoleRollingUpdate":
            return RollingUpdateConfiguration()
        return self.rollout_strategy.rolling_update_configuration or RollingUpdateConfiguration()


GroupPhase = Literal["Pending", "Starting", "Ready", "Recovering", "BackingOff", "Draining", "Deleting"]


class ServingGroupStatus(ApiModel):
    """One ServingGroup as the controller last saw it (Phalanx addition; Kthena has no per-group status)."""

    name: str
    index: int
    phase: GroupPhase
    revision: str
    pods: int = 0
    ready_pods: int = 0
    surge: bool = False
    failures: int = 0  # recoveries in a row of its worst role instance (reset after a stable period)
    message: str = ""


class ModelServingStatus(ApiModel):
    observed_generation: int = 0
    replicas: int = 0  # ServingGroups that exist, surge and deleting ones included
    current_replicas: int = 0  # groups at currentRevision
    updated_replicas: int = 0  # groups at updateRevision
    available_replicas: int = 0  # groups whose every pod is ready
    current_revision: str = ""
    update_revision: str = ""
    label_selector: str = ""
    conditions: list[Condition] = Field(default_factory=list)
    groups: list[ServingGroupStatus] = Field(default_factory=list)


class ModelServing(ApiModel):
    api_version: Literal["serving.phalanx.dev/v1alpha1"] = "serving.phalanx.dev/v1alpha1"
    kind: Literal["ModelServing"] = "ModelServing"
    metadata: ObjectMeta
    spec: ModelServingSpec
    status: ModelServingStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def gang_scheduler(self) -> GangScheduler:
        """Which gang object guards each ServingGroup.

        The annotation wins; otherwise it follows `schedulerName`: Volcano's scheduler gets a
        Volcano PodGroup, the scheduler-plugins scheduler a coscheduling PodGroup, any other
        scheduler none (pods are then placed one by one).
        """
        chosen = self.metadata.annotations.get(GANG_SCHEDULER_ANNOTATION)
        if chosen in ("volcano", "coscheduling", "none"):
            return chosen  # type: ignore[return-value]
        if self.spec.scheduler_name == VOLCANO_SCHEDULER:
            return "volcano"
        if self.spec.scheduler_name == COSCHEDULING_SCHEDULER:
            return "coscheduling"
        return "none"
