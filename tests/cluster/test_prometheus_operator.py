"""The operator's panels and alert rules against Debian's real Prometheus scraping the real operator.

`phalanx operator` runs on the real control plane and reconciles, in one namespace, a ModelServing of
one group whose pods stay Pending (no node has their pool), one at 0 groups, and an observe-only
AutoscalingPolicy on the latter; Prometheus scrapes its /metrics on loopback as the chart's PodMonitor
does (`honor_labels`). Every expression of the shipped dashboards and rules that reads only what the
operator exports must return data (the reconcile errors only after the fault). The fault: a
ValidatingAdmissionPolicy refuses every pod of a third ModelServing, so each of its reconciles fails;
`PhalanxReconcileFailing` (from a test copy of the rules whose `for:` is one second, expressions
unchanged) must then be seen firing, and not before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from phalanx.api import labels as L
from phalanx.kube.resources import AutoscalingPolicyResource, ModelServingResource
from tests.cluster.controlplane import ControlPlane, free_port, operator_process, wait_for
from tests.cluster.servings import sim_serving
from tests.cluster.test_autoscale_operator import NOWHERE, pending_servings, policy, status
from tests.promserver import METRIC, dashboard_queries, fast_rules, prometheus, prometheus_binary, rule_list

pytestmark = pytest.mark.cluster

# What only the operator exports (its own metrics, and ModelServing/AutoscalingPolicy status).
OPERATOR_PREFIXES = ("phalanx_operator_", "phalanx_modelserving_", "phalanx_autoscaling_")
# Operator-side series with no data until something fails, and why.
AFTER_FAULT = {
    "phalanx_operator_reconcile_errors_total": "only after a failed reconcile: checked after the fault"
}
ADMISSION = "/apis/admissionregistration.k8s.io/v1"


def operator_side(expr: str) -> bool:
    names = [match.group(1) for match in METRIC.finditer(expr)]
    return bool(names) and all(name.startswith(OPERATOR_PREFIXES) for name in names)


def operator_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target that reads only the operator, and a count of every
    series a rule reading only the operator selects (a rule returns data only while it fires)."""
    found = [(where, expr) for where, expr in dashboard_queries() if operator_side(expr)]
    for rule in rule_list():
        if operator_side(rule["expr"]):
            found += [(rule["alert"], f"count({m.group(0)})") for m in METRIC.finditer(rule["expr"])]
    return found


def after_fault(expr: str) -> bool:
    return any(name in expr for name in AFTER_FAULT)


@contextmanager
def pods_refused(cp: ControlPlane, namespace: str, serving: str) -> Iterator[None]:
    """A ValidatingAdmissionPolicy (and its binding) that refuses every pod of one ModelServing."""
    name = f"refuse-{namespace}"
    policy_body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": (
                        f"!has(object.metadata.labels) || !('{L.NAME}' in object.metadata.labels)"
                        f" || object.metadata.labels['{L.NAME}'] != '{serving}'"
                    ),
                    "message": f"pods of {serving} are refused by the test",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    made: list[str] = []
    try:
        for kind, body in (
            ("validatingadmissionpolicies", policy_body),
            ("validatingadmissionpolicybindings", binding),
        ):
            code, answer = cp.http("POST", f"{ADMISSION}/{kind}", body=body)
            assert code == 201, answer
            made.append(kind)
        yield
    finally:
        for kind in reversed(made):
            cp.http("DELETE", f"{ADMISSION}/{kind}/{name}")


def no_data(prom: Any, expressions: list[tuple[str, str]], at: float) -> list[str]:
    return [f"{where}: {expr}" for where, expr in expressions if not prom.query(expr, at)]


def test_operator_panels_have_data_and_reconcile_failing_fires(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    binary, _ = prometheus_binary()
    cp = control_plane
    expressions = operator_expressions()
    # The pattern sees the operator's panels and both operator rules.
    assert len(expressions) >= 15, expressions
    assert {"PhalanxReconcileFailing", "PhalanxRolloutStuck"} <= {where for where, _ in expressions}

    namespace = pending_servings(cp, "prom-operator", "watch")
    cp.client().create(ModelServingResource.from_dict(sim_serving(namespace, "held", NOWHERE, 1)))
    port = free_port()
    jobs = [
        {
            "job_name": "phalanx-operator",
            "honor_labels": True,
            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
        }
    ]
    with (
        operator_process(cp, namespace, tmp_path, extra_args=("--health-port", str(port))),
        prometheus(binary, tmp_path, jobs, fast_rules(tmp_path)) as prom,
    ):
        cp.client().create(
            AutoscalingPolicyResource.from_dict(policy(namespace, "watch", "watch", low=1, observe=True))
        )
        wait_for(
            "the policy's status", lambda: "homogeneousStatus" in status(cp, namespace, "watch"), timeout=30
        )
        wait_for(
            "the held serving's group exported",
            lambda: prom.query(
                f'phalanx_modelserving_groups{{namespace="{namespace}",modelserving="held"}} == 1',
                time.time(),
            ),
            timeout=30,
        )
        time.sleep(5)  # several scrapes, so rates and increases have two samples
        healthy = time.time()
        before = [(w, e) for w, e in expressions if not after_fault(e)]
        missing = no_data(prom, before, healthy)
        assert not missing, "no data for:\n" + "\n".join(missing)
        assert "PhalanxReconcileFailing" not in prom.firing()

        # The fault: the API server refuses every pod of "refused"; its reconciles fail and requeue.
        with pods_refused(cp, namespace, "refused"):
            time.sleep(2)  # the API server loads the policy
            cp.client().create(ModelServingResource.from_dict(sim_serving(namespace, "refused", NOWHERE, 1)))
            firing = wait_for(
                "PhalanxReconcileFailing firing",
                lambda: "PhalanxReconcileFailing" in prom.firing(),
                timeout=60,
            )
            assert firing
            alerts = [
                a
                for a in prom.api("alerts")["alerts"]
                if a["labels"]["alertname"] == "PhalanxReconcileFailing"
            ]
            assert {a["labels"]["kind"] for a in alerts if a["state"] == "firing"} == {"ModelServing"}, alerts
            faulted = time.time()
            missing = no_data(prom, [(w, e) for w, e in expressions if after_fault(e)], faulted)
            assert not missing, "no data after the fault for:\n" + "\n".join(missing)
