"""`examples/quickstart-pd.yaml` under a real `phalanx up`: the official `openai` client is served through
prefill then decode.

That the PD path was taken is read from both sides, not assumed: the router counts the request as
disaggregated, the decode engines' own KV-transfer histograms count one pull per request (a real socket to
the prefill pod's side channel), the prefill engine computed the prompt, and no KV block is leaked. A short
prompt skips prefill: the prefill engine sees nothing of it. A `phalanx apply` that changes the decode
template only rolls decode under PD traffic without a failed request, and prefill keeps its processes.
The same example with SGLang's flags instead is served by the concurrent bootstrap flow, and two groups
paired by ServingGroup never hand a KV across groups.
"""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.component.embedded.harness import ROOT, Up, running_up
from tests.component.embedded.test_up import Load

pytestmark = pytest.mark.component

QUICKSTART_PD = ROOT / "examples" / "quickstart-pd.yaml"
NAME = "quickstart-pd"
MODEL = "tiny-test"


def scrape(url: str) -> dict[str, float]:
    """Every sample of a Prometheus page, summed over label sets (labels `name{k=v}` kept apart too)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name] = found.get(sample.name, 0.0) + sample.value
            for key, value in sample.labels.items():
                labelled = f"{sample.name}{{{key}={value}}}"
                found[labelled] = found.get(labelled, 0.0) + sample.value
    return found


def all_disaggregated(routed: dict[str, float], requests: int) -> None:
    """The router's metrics say each of `requests` went prefill then decode: none skipped prefill or fell
    back. Exact: a stream whose client closed right after [DONE] (the sync `openai` client does) is
    complete, 200 in its mode, not a 499."""
    assert routed.get("phalanx_router_requests_total") == requests, routed
    assert routed.get("phalanx_router_requests_total{code=200}") == requests, routed
    disaggregated = routed.get("phalanx_router_pd_requests_total{mode=disaggregated}", 0.0)
    assert routed.get("phalanx_router_pd_requests_total") == disaggregated == requests, routed
    assert routed.get("phalanx_router_pd_prefill_skipped_total", 0.0) == 0, routed
    assert routed.get("phalanx_router_pd_fallbacks_total", 0.0) == 0, routed


def entries(up: Up, role: str) -> list[str]:
    """The metrics pages of the role's entry pods (each engine serves on its own loopback address)."""
    pods = [p for p in up.status()["pods"] if p["serving"] == NAME and p["role"] == role and p["entry"]]
    assert pods and all(p["ip"] for p in pods), pods
    return [f"http://{p['ip']}:8000/metrics" for p in pods]


def summed(urls: list[str], name: str) -> float:
    return sum(scrape(url).get(name, 0.0) for url in urls)


def long_prompt() -> str:
    """About a thousand tokens, unique, so neither a prefix cache nor the short-prompt rule skips prefill."""
    words = [f"{uuid.uuid4().hex[:8]}" for _ in range(600)]
    return "Summarise these notes: " + " ".join(words)


def chat(api: openai.OpenAI, text: str, max_tokens: int) -> Any:
    return api.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=max_tokens
    )


def test_quickstart_pd_serves_the_openai_client_through_prefill_then_decode(tmp_path: Path) -> None:
    with running_up(tmp_path, QUICKSTART_PD) as up:
        up.wait_available(NAME, timeout=120)
        router = f"http://127.0.0.1:{up.port}/metrics"
        prefill, decode = entries(up, "prefill"), entries(up, "decode")
        api = openai.OpenAI(base_url=up.base_url, api_key="unused", max_retries=0, timeout=60)
        assert MODEL in [m.id for m in api.models.list()]

        reply = chat(api, long_prompt(), max_tokens=12)
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.completion_tokens == 12
        assert reply.usage.prompt_tokens > 256
        stream = api.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": long_prompt()}],
            max_tokens=10,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10

        all_disaggregated(scrape(router), 2)
        # Each decode pulled its KV once from the prefill pod, and nothing failed or leaked.
        assert summed(decode, "vllm:nixl_xfer_time_seconds_count") == 2
        assert summed(decode + prefill, "vllm:nixl_num_failed_transfers_total") == 0
        assert summed(prefill, "phalanx_sim_kv_leaked_blocks") == 0
        prompts_on_prefill = summed(prefill, "vllm:prompt_tokens_total")
        assert prompts_on_prefill > 2 * 256

        # A short prompt is prefilled on decode: the prefill engine computes nothing of it.
        assert chat(api, "Hi", max_tokens=4).choices[0].message.content
        routed = scrape(router)
        assert routed.get("phalanx_router_pd_prefill_skipped_total{reason=short-prompt}") == 1, routed
        assert summed(prefill, "vllm:prompt_tokens_total") == prompts_on_prefill
        assert summed(decode, "vllm:nixl_xfer_time_seconds_count") == 2


class LongPromptLoad(Load):
    """`test_up.Load`'s threads, streaming long prompts: each goes through prefill, then decode."""

    def _run(self, worker: int) -> None:
        api = openai.OpenAI(base_url=self.up.base_url, api_key="unused", max_retries=0, timeout=60)
        while not self.stop.is_set():
            try:
                stream = api.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": long_prompt()}],
                    max_tokens=48,
                    stream=True,
                )
                finish = [c.choices[0].finish_reason for c in stream if c.choices]
                assert finish[-1] == "length", (worker, finish)
                with self.lock:
                    self.ok += 1
            except Exception as exc:  # every kind of failure counts
                with self.lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")


def pods_by_role(up: Up, role: str) -> dict[str, tuple[list[int], int]]:
    """Pod name -> (process ids, restarts) of the role's live pods."""
    return {
        p["name"]: (p["pids"], p["restarts"])
        for p in up.status()["pods"]
        if p["serving"] == NAME and p["role"] == role and not p["terminating"]
    }


def test_a_decode_rollout_under_pd_traffic_fails_nothing_and_leaves_prefill_running(tmp_path: Path) -> None:
    spec = yaml.safe_load(QUICKSTART_PD.read_text())
    with running_up(tmp_path, QUICKSTART_PD) as up:
        up.wait_available(NAME, timeout=120)
        prefill = pods_by_role(up, "prefill")
        decode = pods_by_role(up, "decode")
        old = up.serving(NAME)["status"]["updateRevision"]
        [role] = [r for r in spec["spec"]["template"]["roles"] if r["name"] == "decode"]
        role["entryTemplate"]["spec"]["containers"][0]["args"] += ["--seed", "1"]
        with LongPromptLoad(up, workers=3) as load:
            up.wait_for(lambda _: load.ok >= 3, "PD traffic flowing", timeout=30)
            applied = up.phalanx("apply", "-f", str(up.write_spec(spec, "v2.yaml")))
            assert applied.returncode == 0, applied.stderr

            def rolled(_: dict[str, Any]) -> bool:
                status = up.serving(NAME)["status"]
                conditions = {c["type"]: c for c in status["conditions"]}
                return (
                    status["updateRevision"] != old
                    and conditions["UpdateInProgress"]["reason"] == "UpdateComplete"
                    and conditions["Available"]["status"] == "True"
                )

            up.wait_for(rolled, "decode rolled", timeout=120)
            during = load.ok
            up.wait_for(lambda _: load.ok >= during + 3, "PD traffic after", timeout=30)
        assert load.failures == []
        now = pods_by_role(up, "decode")
        assert sorted(now) == sorted(decode) and all(now[n][0] != decode[n][0] for n in now)
        assert pods_by_role(up, "prefill") == prefill  # same processes, no restart
        all_disaggregated(scrape(f"http://127.0.0.1:{up.port}/metrics"), load.ok)


def sglang_flavour() -> dict[str, Any]:
    """The example with SGLang's flags instead of vLLM's: the concurrent bootstrap flow."""
    spec: dict[str, Any] = yaml.safe_load(QUICKSTART_PD.read_text())
    for role in spec["spec"]["template"]["roles"]:
        container = role["entryTemplate"]["spec"]["containers"][0]
        at = container["args"].index("--kv-transfer-config")
        del container["args"][at : at + 2]
        del container["env"]
        mode = ["--disaggregation-mode", role["name"], "--disaggregation-transfer-backend", "mooncake"]
        port = ["--disaggregation-bootstrap-port", "8998"] if role["name"] == "prefill" else []
        container["args"] += mode + port
    return spec


def test_the_sglang_flavour_serves_through_prefill_and_decode_at_once(tmp_path: Path) -> None:
    with running_up(tmp_path, sglang_flavour()) as up:
        up.wait_available(NAME, timeout=120)
        prefill, decode = entries(up, "prefill"), entries(up, "decode")
        api = openai.OpenAI(base_url=up.base_url, api_key="unused", max_retries=0, timeout=60)
        reply = chat(api, long_prompt(), max_tokens=12)
        assert reply.usage is not None and reply.usage.completion_tokens == 12
        stream = api.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": long_prompt()}], max_tokens=10, stream=True
        )
        assert [c.choices[0].finish_reason for c in stream if c.choices][-1] == "length"
        all_disaggregated(scrape(f"http://127.0.0.1:{up.port}/metrics"), 2)
        # The decode engines read each prompt's KV from the prefill engine's bootstrap room.
        assert summed(decode, "vllm:nixl_xfer_time_seconds_count") == 2
        assert summed(prefill, "vllm:prompt_tokens_total") > 2 * 256
        assert summed(prefill, "phalanx_sim_kv_leaked_blocks") == 0


def test_pairing_by_serving_group_keeps_each_kv_inside_its_group(tmp_path: Path) -> None:
    spec: dict[str, Any] = yaml.safe_load(QUICKSTART_PD.read_text())
    spec["spec"]["replicas"] = 2
    spec["spec"]["template"]["disaggregation"] = {"pairing": "ServingGroup"}
    with running_up(tmp_path, spec) as up:
        up.wait_available(NAME, timeout=120)
        pods = [p for p in up.status()["pods"] if p["serving"] == NAME and p["entry"]]

        def pages(role: str, group: int) -> list[str]:
            return [
                f"http://{p['ip']}:8000/metrics" for p in pods if p["role"] == role and p["group"] == group
            ]

        api = openai.OpenAI(base_url=up.base_url, api_key="unused", max_retries=0, timeout=60)
        for _ in range(8):
            chat(api, long_prompt(), max_tokens=4)
        all_disaggregated(scrape(f"http://127.0.0.1:{up.port}/metrics"), 8)
        # Each group's decode engines pulled exactly the prompts its own prefill engine computed.
        pulled = [summed(pages("decode", g), "vllm:nixl_xfer_time_seconds_count") for g in (0, 1)]
        prefilled = [summed(pages("prefill", g), "vllm:request_success_total") for g in (0, 1)]
        assert pulled == prefilled and sum(pulled) == 8, (pulled, prefilled)
