"""Names Phalanx writes onto the objects it owns: labels, annotations and injected env vars.

Everything the controller needs to rebuild its view of the world after a restart is carried
here, on the objects themselves (level-triggered: no hidden controller state).
"""

from __future__ import annotations

from typing import Final

API_GROUP: Final = "serving.phalanx.dev"
API_VERSION: Final = "v1alpha1"
GROUP_VERSION: Final = f"{API_GROUP}/{API_VERSION}"

_P: Final = f"{API_GROUP}/"

# Pod labels (all values are strings).
NAME: Final = _P + "name"  # the ModelServing
GROUP_INDEX: Final = _P + "group-index"  # ServingGroup ordinal
ROLE: Final = _P + "role"  # role name
ROLE_INDEX: Final = _P + "role-index"  # role instance ordinal within the group
POD_INDEX: Final = _P + "pod-index"  # 0 = entry pod, 1..N = workers
ENTRY: Final = _P + "entry"  # "true" on entry pods
REVISION: Final = _P + "revision"  # the ServingGroup's revision (group template hash)
ROLE_REVISION: Final = _P + "role-revision"  # the role template hash (RoleRollingUpdate)
SURGE: Final = _P + "surge"  # "true" on the objects of a rollout's surge groups (maxSurge)

# Prefill/decode disaggregation, on every pod of a role whose PD kind is known.
PD_ROLE: Final = _P + "pd-role"  # "prefill" | "decode"
PD_PAIR_KEY: Final = _P + "pd-pair-key"  # prefill and decode pods pair only with equal keys

# Every label Phalanx sets on pods; users may not set these in templates.
RESERVED_POD_LABELS: Final = frozenset(
    {
        NAME,
        GROUP_INDEX,
        ROLE,
        ROLE_INDEX,
        POD_INDEX,
        ENTRY,
        REVISION,
        ROLE_REVISION,
        SURGE,
        PD_ROLE,
        PD_PAIR_KEY,
    }
)
# Pod annotations of PD roles, read by the router from entry pods.
PD_PROTOCOL_ANNOTATION: Final = _P + "pd-protocol"  # "vllm" (kv_transfer_params) | "sglang" (bootstrap)
PD_BOOTSTRAP_PORT_ANNOTATION: Final = _P + "pd-bootstrap-port"  # SGLang prefill pods: the bootstrap port

# Annotations on the ModelServing that tune how it is run.
GANG_SCHEDULER_ANNOTATION: Final = _P + "gang-scheduler"  # volcano | coscheduling | none
VOLCANO_QUEUE_ANNOTATION: Final = "scheduling.volcano.sh/queue-name"
COSCHEDULING_TIMEOUT_ANNOTATION: Final = _P + "schedule-timeout-seconds"
POD_DELETION_COST_ANNOTATION: Final = "controller.kubernetes.io/pod-deletion-cost"

# Gang objects.
VOLCANO_GROUP_ANNOTATION: Final = "scheduling.k8s.io/group-name"
VOLCANO_TASK_ANNOTATION: Final = "volcano.sh/task-spec"
VOLCANO_PODGROUP_API: Final = "scheduling.volcano.sh/v1beta1"
COSCHEDULING_LABEL: Final = "scheduling.x-k8s.io/pod-group"
COSCHEDULING_PODGROUP_API: Final = "scheduling.x-k8s.io/v1alpha1"

# The compatibility label set: Kthena's and LeaderWorkerSet's pod labels with their values, so
# affinity terms, selectors and downward-API env written for them find Phalanx pods too. Phalanx
# itself never selects on them; a template label with the same key keeps its value (as on Kthena).
_KTHENA: Final = "modelserving.volcano.sh/"
KTHENA_NAME: Final = _KTHENA + "name"  # the ModelServing
KTHENA_GROUP_NAME: Final = _KTHENA + "group-name"  # <servingName>-<groupIndex>
KTHENA_ROLE: Final = _KTHENA + "role"  # role name
KTHENA_ROLE_ID: Final = _KTHENA + "role-id"  # <roleName>-<roleIndex>
KTHENA_ENTRY: Final = _KTHENA + "entry"  # "true", on entry pods only
KTHENA_REVISION: Final = _KTHENA + "revision"  # our group revision hash
KTHENA_ROLE_TEMPLATE_HASH: Final = _KTHENA + "role-template-hash"  # our role revision hash
_LWS: Final = "leaderworkerset.sigs.k8s.io/"
LWS_NAME: Final = _LWS + "name"  # <servingName>-<groupIndex>-<roleName>: the LeaderWorkerSet analogue
LWS_GROUP_INDEX: Final = _LWS + "group-index"  # the role instance ordinal: the LWS group
LWS_GROUP_KEY: Final = _LWS + "group-key"  # sha1 of "<namespace>/<entry pod name>"
LWS_WORKER_INDEX: Final = _LWS + "worker-index"  # 0 on the entry pod, 1..N on workers
LWS_SIZE_ANNOTATION: Final = _LWS + "size"  # pods in the role instance
LWS_LEADER_NAME_ANNOTATION: Final = _LWS + "leader-name"  # on workers: the entry pod's name

# Environment injected into every container and init container of every pod.
ENV_ENTRY_ADDRESS: Final = "ENTRY_ADDRESS"  # the entry pod's DNS name (its headless Service)
ENV_WORKER_INDEX: Final = "WORKER_INDEX"  # 0 on the entry pod, 1..N on workers
ENV_GROUP_SIZE: Final = "GROUP_SIZE"  # pods in this role instance: 1 + workerReplicas
ENV_GROUP_INDEX: Final = "GROUP_INDEX"  # the ServingGroup ordinal
ENV_ROLE_NAME: Final = "ROLE_NAME"
ENV_ROLE_INDEX: Final = "ROLE_INDEX"
ENV_MODEL_SERVING: Final = "MODEL_SERVING_NAME"
# LeaderWorkerSet's, with its meaning: the entry pod's own DNS name (hostname.subdomain.namespace),
# pods in the role instance, and this pod's index in it.
ENV_LWS_LEADER_ADDRESS: Final = "LWS_LEADER_ADDRESS"
ENV_LWS_GROUP_SIZE: Final = "LWS_GROUP_SIZE"
ENV_LWS_WORKER_INDEX: Final = "LWS_WORKER_INDEX"
INJECTED_ENV: Final = (
    ENV_ENTRY_ADDRESS,
    ENV_WORKER_INDEX,
    ENV_GROUP_SIZE,
    ENV_GROUP_INDEX,
    ENV_ROLE_NAME,
    ENV_ROLE_INDEX,
    ENV_MODEL_SERVING,
    ENV_LWS_LEADER_ADDRESS,
    ENV_LWS_GROUP_SIZE,
    ENV_LWS_WORKER_INDEX,
)

FIELD_MANAGER: Final = "phalanx"
