"""The shipped dashboards and alert rules against Debian's real Prometheus scraping a real `phalanx up`.

Prometheus scrapes the router and every engine entry pod of `examples/quickstart-pd.yaml` (targets from
`phalanx up`'s status, rewritten as pods come and go, with the labels the chart's PodMonitor sets) under
steady load on loopback, with an observe-only AutoscalingPolicy on its roles that decides a move (its
minimum is above the running count) and applies nothing. Every PromQL expression of
`deploy/grafana/*.json` and every metric an alert rule of `deploy/prometheus/rules.yaml` reads must
return data, unless it is in `WAITING` (documented in docs/observability.md). Then every engine is
stopped while clients that wait at most 0.5 s in the router's queue keep asking, and a test-only copy
of the rules whose `for:` is one second (expressions unchanged) must be seen firing through
`/api/v1/alerts` (no ready group, error ratio); then every engine is killed under load, and the error
panels must return data.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.component.embedded.harness import ROOT, Up, running_up
from tests.component.embedded.test_up import Load
from tests.promserver import (
    METRIC,
    RULES,
    dashboard_queries,
    fast_rules,
    prometheus,
    prometheus_binary,
    rule_list,
    write_atomically,
)

pytestmark = pytest.mark.component

QUICKSTART_PD = ROOT / "examples" / "quickstart-pd.yaml"
# Checked after engines are killed under load, when the router has answered errors.
AFTER_FAULT = "only on errors: checked after the engines are killed"
# Metrics no `phalanx up` exports, or only after a fault, and why (docs/observability.md lists them
# in its paragraph on `WAITING`).
_OPERATOR_ONLY = "the operator: tests/cluster/test_prometheus_operator.py"
WAITING = {
    "kube_pod_container_status_restarts_total": "kube-state-metrics, on Kubernetes only",
    "phalanx_operator_reconcile_duration_seconds_count": _OPERATOR_ONLY,
    "phalanx_operator_reconcile_errors_total": _OPERATOR_ONLY,
    "phalanx_operator_queue_depth": _OPERATOR_ONLY,
    "phalanx_operator_leader": _OPERATOR_ONLY,
    "phalanx_operator_draining_entry_pods": _OPERATOR_ONLY,
    "phalanx_operator_draining_entry_pods_unknown": _OPERATOR_ONLY,
    "sglang:": "the quickstart runs the vLLM-compatible simulator",
    "phalanx_router_pd_fallbacks_total": "only when a prefill fails (the fault comes after the check)",
    "phalanx_router_pd_prefill_failures_total": "only when a prefill fails",
    "vllm:nixl_num_failed_transfers_total": "only when a KV transfer fails",
    "phalanx_router_no_endpoint_rejections_total": "only with no endpoint (the fault comes after the check)",
    "phalanx_router_errors_total": AFTER_FAULT,
    "phalanx_router_retries_total": "only on failed attempts",
    "phalanx_router_stream_failures_total": "only on broken streams",
    "phalanx_router_engine_metrics_scrape_errors_total": "only when an engine's /metrics fails",
    "phalanx_router_health_events_total": "only when an endpoint is ejected",
    "phalanx_router_queue_depth": "only while requests queue in the router",
    'code=~"5.."': "only on 5xx answers",
}


def observe_only_policy() -> dict[str, Any]:
    """A policy on quickstart-pd's roles that records one scale-up of decode and applies nothing."""
    return {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "AutoscalingPolicy",
        "metadata": {"name": "quickstart-pd", "namespace": "default"},
        "spec": {
            "period": "1s",
            "observeOnly": True,
            "metrics": [{"name": "num_requests_waiting", "targetValue": 4}],
            "disaggregatedTarget": {
                "targetRef": {"kind": "ModelServing", "name": "quickstart-pd"},
                "roles": {
                    "prefill": {"minReplicas": 1, "maxReplicas": 1},
                    "decode": {"minReplicas": 3, "maxReplicas": 4},
                },
            },
        },
    }


def spec_with_policy(workdir: Path) -> Path:
    path = workdir / "quickstart-pd-observed.yaml"
    path.write_text(QUICKSTART_PD.read_text() + "---\n" + yaml.safe_dump(observe_only_policy()))
    return path


def waits(text: str) -> str | None:
    return next((why for key, why in WAITING.items() if key in text), None)


def engine_targets(up: Up) -> list[dict[str, Any]]:
    """file_sd targets of the engine entry pods, labelled as the chart's PodMonitor labels them."""
    groups: list[dict[str, Any]] = []
    for pod in up.status()["pods"]:
        if not (pod["entry"] and pod["ip"]) or pod["terminating"]:
            continue
        labels = {
            "modelserving": pod["serving"],
            "role": pod["role"],
            "group": str(pod["group"]),
            "pod": pod["name"],
            "revision": pod["revision"],
        }
        # The example names its roles after their PD kind (the PodMonitor reads the pd-role label).
        if pod["role"] in ("prefill", "decode"):
            labels["pd_role"] = pod["role"]
        groups.append({"targets": [f"{pod['ip']}:8000"], "labels": labels})
    return groups


def test_rules_file_passes_promtool() -> None:
    _, promtool = prometheus_binary()
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout


def test_rollout_stuck_fires_after_30_minutes_without_progress(tmp_path: Path) -> None:
    """PhalanxRolloutStuck in promtool's rule tests, on series as the status metrics export them:
    a rollout whose updated groups last moved at minute 5 fires at minute 35, not before; a
    rollout that progresses, and a ModelServing not rolling, never do."""
    _, promtool = prometheus_binary()
    rule = next(r for r in rule_list() if r["alert"] == "PhalanxRolloutStuck")

    def series(name: str, modelserving: str, values: str) -> dict[str, str]:
        return {"series": f'{name}{{namespace="team",modelserving="{modelserving}"}}', "values": values}

    summary = rule["annotations"]["summary"].replace("{{ $labels.namespace }}", "team")
    expected = {
        "exp_labels": {"severity": "warning", "namespace": "team", "modelserving": "stuck"},
        "exp_annotations": {
            **rule["annotations"],
            "summary": summary.replace("{{ $labels.modelserving }}", "stuck"),
        },
    }
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    series("phalanx_modelserving_rollout_in_progress", "stuck", "1x60"),
                    series("phalanx_modelserving_updated_groups", "stuck", "0x4 1x55"),
                    series("phalanx_modelserving_rollout_in_progress", "moving", "1x60"),
                    series("phalanx_modelserving_updated_groups", "moving", "0+1x60"),
                    series("phalanx_modelserving_rollout_in_progress", "done", "0x60"),
                    series("phalanx_modelserving_updated_groups", "done", "3x60"),
                ],
                "alert_rule_test": [
                    {"eval_time": "34m", "alertname": "PhalanxRolloutStuck", "exp_alerts": []},
                    {"eval_time": "36m", "alertname": "PhalanxRolloutStuck", "exp_alerts": [expected]},
                ],
            }
        ],
    }
    path = tmp_path / "rollout-stuck-test.yaml"
    path.write_text(yaml.safe_dump(tests))
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


class Impatient(Load):
    """Clients that send requests in a loop and wait at most 0.5 s in the router's queue
    (`x-queue-timeout`), counting the status codes they get."""

    def __init__(self, up: Up) -> None:
        self.url = f"http://127.0.0.1:{up.port}/v1/chat/completions"
        self.codes: Counter[int] = Counter()
        super().__init__(up, workers=3)

    def _run(self, worker: int) -> None:
        body = json.dumps(
            {"model": "tiny-test", "messages": [{"role": "user", "content": f"i{worker}"}], "max_tokens": 4}
        ).encode()
        headers = {"Content-Type": "application/json", "x-queue-timeout": "0.5"}
        while not self.stop.is_set():
            request = urllib.request.Request(self.url, data=body, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=3) as resp:
                    code = resp.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            except OSError:
                code = 0  # sent to a stopped engine before its pod turned unready: gave up
            with self.lock:
                self.codes[code] += 1


def phalanx_up_jobs(router_port: int, engines: Path) -> list[dict[str, Any]]:
    """The router, and the engine entry pods from a file_sd file the test rewrites."""
    write_atomically(engines, [])
    return [
        {"job_name": "phalanx-router", "static_configs": [{"targets": [f"127.0.0.1:{router_port}"]}]},
        {
            "job_name": "phalanx-engine",
            "file_sd_configs": [{"files": [str(engines)], "refresh_interval": "1s"}],
        },
    ]


def refresh_targets(up: Up, engines: Path) -> None:
    with contextlib.suppress(Exception):  # `phalanx up` may be busy; the next refresh catches up
        write_atomically(engines, engine_targets(up))


def test_dashboards_and_alerts_against_real_prometheus(tmp_path: Path) -> None:
    binary, _ = prometheus_binary()
    started = time.monotonic()
    with running_up(tmp_path, spec_with_policy(tmp_path)) as up:
        up.wait_available("quickstart-pd", timeout=60)
        engines = tmp_path / "engines.json"
        jobs = phalanx_up_jobs(up.port, engines)
        with prometheus(binary, tmp_path, jobs, fast_rules(tmp_path)) as prom:
            refresh_targets(up, engines)
            with Load(up, workers=3) as load:
                for _ in range(20):
                    refresh_targets(up, engines)
                    time.sleep(1)
            assert load.ok > 0 and not load.failures, load.failures[:5]
            healthy = time.time()

            missing: list[str] = []
            for where, expr in dashboard_queries():
                if not prom.query(expr, healthy) and not waits(expr):
                    missing.append(f"{where}: {expr}")
            for rule in rule_list():
                prom.query(rule["expr"], healthy)  # a valid query, whatever it returns now
                for match in METRIC.finditer(rule["expr"]):
                    selector = match.group(0)
                    if not prom.query(f"count({selector})", healthy) and not waits(selector):
                        missing.append(f"{rule['alert']}: {selector}")
            assert not missing, "no data for:\n" + "\n".join(missing)

            # The fault: every engine stopped (SIGSTOP): its pods stay, their scrapes fail, their
            # readiness probes fail, and clients that wait at most half a second in the router's
            # queue are answered 504: no ready group, and a high error ratio.
            pids = [pid for pod in up.status()["pods"] for pid in pod["pids"]]
            assert pids
            expected = {"PhalanxNoReadyGroup", "PhalanxHighErrorRatio"}
            try:
                for pid in pids:
                    os.kill(pid, signal.SIGSTOP)
                firing: set[str] = set()
                alerts: list[Any] = []
                with Impatient(up) as impatient:
                    deadline = time.monotonic() + 40
                    while time.monotonic() < deadline and not expected <= firing:
                        alerts = prom.api("alerts")["alerts"]
                        firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
                        time.sleep(0.5)
            finally:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
            assert expected <= firing, (alerts, impatient.codes)
            assert 504 in impatient.codes

            # Then every engine killed under load: requests in flight fail, and what waited for
            # errors has data.
            time.sleep(2)
            pids = [pid for pod in up.status()["pods"] for pid in pod["pids"]]
            with Load(up, workers=3):
                time.sleep(1)
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and not prom.query(
                    "count(phalanx_router_errors_total)", time.time()
                ):
                    time.sleep(0.5)
            after = time.time()
            empty = [
                f"{where}: {expr}"
                for where, expr in dashboard_queries()
                if waits(expr) == AFTER_FAULT and not prom.query(expr, after)
            ]
            for rule in rule_list():
                for match in METRIC.finditer(rule["expr"]):
                    selector = match.group(0)
                    if waits(selector) == AFTER_FAULT and not prom.query(f"count({selector})", after):
                        empty.append(f"{rule['alert']}: {selector}")
            assert not empty, "no data after the fault for:\n" + "\n".join(empty)
    try:
        assert not up.leftovers(), "processes left behind"
    finally:
        up.kill_leftovers()
    assert time.monotonic() - started < 120
