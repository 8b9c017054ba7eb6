"""The resource types Phalanx reads and writes, as lightkube classes, and objects as plain dicts."""

from __future__ import annotations

from typing import Any

from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import ControllerRevision
from lightkube.resources.core_v1 import Pod, Service

from phalanx.api import labels as L

ModelServingResource = create_namespaced_resource(L.API_GROUP, L.API_VERSION, "ModelServing", "modelservings")
ModelDeploymentResource = create_namespaced_resource(
    L.API_GROUP, L.API_VERSION, "ModelDeployment", "modeldeployments"
)
AutoscalingPolicyResource = create_namespaced_resource(
    L.API_GROUP, L.API_VERSION, "AutoscalingPolicy", "autoscalingpolicies"
)
VolcanoPodGroup = create_namespaced_resource("scheduling.volcano.sh", "v1beta1", "PodGroup", "podgroups")
CoschedulingPodGroup = create_namespaced_resource("scheduling.x-k8s.io", "v1alpha1", "PodGroup", "podgroups")

PODGROUPS: dict[str, type[NamespacedResource]] = {
    L.VOLCANO_PODGROUP_API: VolcanoPodGroup,
    L.COSCHEDULING_PODGROUP_API: CoschedulingPodGroup,
}

# The CRD behind each gang API: the operator watches these to notice Volcano or the coscheduling
# plugin being installed (or removed) while it runs.
PODGROUP_CRDS: dict[str, str] = {
    "podgroups.scheduling.volcano.sh": L.VOLCANO_PODGROUP_API,
    "podgroups.scheduling.x-k8s.io": L.COSCHEDULING_PODGROUP_API,
}
# The gang scheduler ("volcano" | "coscheduling") each gang API serves.
GANG_OF_API: dict[str, str] = {L.VOLCANO_PODGROUP_API: "volcano", L.COSCHEDULING_PODGROUP_API: "coscheduling"}

BY_KIND: dict[str, type[NamespacedResource]] = {
    "Pod": Pod,
    "Service": Service,
    "ControllerRevision": ControllerRevision,
}


def as_dict(obj: Any) -> dict[str, Any]:
    """A lightkube object (model or generic resource) as a plain dict."""
    data: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return data
