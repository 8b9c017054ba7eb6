"""Reading specs from YAML: the seed manifest, syntax errors and unknown fields with lines."""

from __future__ import annotations

from phalanx.api import ModelServing, load_text
from tests.conftest import EXAMPLES

SEED_EXAMPLE = EXAMPLES / "llama-multinode.yaml"


def test_kthena_seed_manifest_is_accepted_with_only_the_api_version_changed() -> None:
    loaded = load_text(SEED_EXAMPLE.read_text(), "seed.yaml")
    assert loaded.problems == []
    (ms,) = loaded.resources
    assert isinstance(ms, ModelServing)
    assert ms.spec.scheduler_name == "volcano"
    assert ms.spec.template.restart_grace_period_seconds == 60
    assert ms.spec.template.gang_policy is not None
    assert ms.spec.template.gang_policy.min_role_replicas == {"405b": 1}
    role = ms.spec.template.roles[0]
    assert (role.name, role.replicas, role.worker_replicas) == ("405b", 2, 1)


def test_kthena_api_version_is_reported_with_the_exact_fix() -> None:
    text = SEED_EXAMPLE.read_text().replace(
        "serving.phalanx.dev/v1alpha1", "workload.serving.volcano.sh/v1alpha1"
    )
    loaded = load_text(text, "seed.yaml")
    (error,) = loaded.errors
    assert error.field == "apiVersion"
    assert error.line == 1
    assert "change apiVersion to serving.phalanx.dev/v1alpha1" in error.fix


def test_defaults_follow_kthena() -> None:
    loaded = load_text(
        """
apiVersion: serving.phalanx.dev/v1alpha1
kind: ModelServing
metadata: {name: d}
spec:
  template:
    roles:
      - name: r
        entryTemplate: {spec: {containers: [{name: c, image: i}]}}
"""
    )
    (ms,) = loaded.resources
    assert isinstance(ms, ModelServing)
    spec = ms.spec
    assert spec.replicas == 1
    assert spec.scheduler_name == "volcano"
    assert spec.recovery_policy == "RoleRecreate"
    assert spec.rollout_strategy.type == "ServingGroupRollingUpdate"
    assert (
        spec.rolling_update.max_unavailable,
        spec.rolling_update.max_surge,
        spec.rolling_update.partition,
    ) == (
        1,
        0,
        0,
    )
    assert spec.template.restart_grace_period_seconds == 0
    assert spec.template.roles[0].replicas == 1
    assert spec.template.roles[0].worker_replicas == 0
    assert ms.metadata.namespace == "default"


def test_yaml_syntax_error_has_line_and_column() -> None:
    loaded = load_text("apiVersion: v1\nkind: [ModelServing\nmetadata: {}\n", "broken.yaml")
    (error,) = loaded.errors
    assert error.line == 3
    assert "YAML syntax error" in error.message
    assert error.render("broken.yaml").startswith("broken.yaml:3:")


def test_duplicate_keys_keep_the_last_value_as_kubectl_does() -> None:
    loaded = load_text("apiVersion: a\napiVersion: b\nkind: ModelServing\n")
    (error,) = loaded.errors
    assert error.path == ("apiVersion",)
    assert error.value == "b"
    (warning,) = loaded.warnings
    assert warning.line == 2
    assert "written twice" in warning.message


def test_unknown_fields_are_reported_with_line_and_suggestion() -> None:
    text = """apiVersion: serving.phalanx.dev/v1alpha1
kind: ModelServing
metadata:
  name: demo
spec:
  replica: 2
  template:
    roles:
      - name: r
        entryTemplate:
          spec:
            containers:
              - name: c
                image: i
                imagePullPolicyy: Always
"""
    loaded = load_text(text)
    by_field = {e.field: e for e in loaded.errors}
    assert by_field["spec.replica"].line == 6
    assert by_field["spec.replica"].fix == "did you mean 'replicas'?"
    pod_field = "spec.template.roles[0].entryTemplate.spec.containers[0].imagePullPolicyy"
    assert by_field[pod_field].line == 15
    assert by_field[pod_field].fix == "did you mean 'imagePullPolicy'?"


def test_all_problems_are_reported_at_once() -> None:
    text = """apiVersion: serving.phalanx.dev/v1alpha1
kind: ModelServing
metadata:
  name: Bad_Name
spec:
  replicas: -1
  template:
    roles:
      - name: decode
        workerReplicas: 1
        entryTemplate:
          spec:
            containers: [{name: c, image: "a b"}]
"""
    fields = {e.field for e in load_text(text).errors}
    assert fields == {
        "spec.replicas",
        "metadata.name",
        "spec.template.roles[0].workerTemplate",
        "spec.template.roles[0].entryTemplate.spec.containers[0].image",
    }


def test_non_phalanx_kind_and_empty_file() -> None:
    loaded = load_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    assert {e.field for e in loaded.errors} == {"apiVersion", "kind"}
    assert load_text("").errors[0].message == "the file holds no YAML document"


def test_multi_document_files_report_the_document_index() -> None:
    good = SEED_EXAMPLE.read_text()
    loaded = load_text(good + "\n---\n" + good.replace("replicas: 1  # group replicas", "replicas: x"))
    assert len(loaded.resources) == 1
    (error,) = loaded.errors
    assert (error.document, error.field) == (1, "spec.replicas")
