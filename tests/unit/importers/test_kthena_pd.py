"""Kthena prefill/decode ModelServings imported: kinds written out from the engine flags, or from a
ModelServer's pdGroup in the same file, its groupKey as pairing, and notes for what has no equivalent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phalanx.api import labels as L
from phalanx.api.disaggregation import RolePd, role_pd
from phalanx.api.yamlfile import dump_yaml
from tests.unit.api import pd_specs
from tests.unit.api.kthena import KTHENA_API_VERSION
from tests.unit.importers.helpers import group_pods, imported, only_resource, phalanx_import, serving

Spec = dict[str, Any]


def kthena(spec: Spec) -> Spec:
    return {**spec, "apiVersion": KTHENA_API_VERSION}


def model_server(
    selector: dict[str, str],
    group_key: str = "modelserving.volcano.sh/group-name",
    prefill: dict[str, str] | None = None,
    decode: dict[str, str] | None = None,
    engine: str = "vLLM",
    connector: str | None = "nixl",
    namespace: str = "default",
) -> Spec:
    spec: Spec = {
        "workloadSelector": {
            "matchLabels": selector,
            "pdGroup": {
                "groupKey": group_key,
                "prefillLabels": prefill or {"modelserving.volcano.sh/role": "prefill"},
                "decodeLabels": decode or {"modelserving.volcano.sh/role": "decode"},
            },
        },
        "workloadPort": {"port": 8000},
        "model": "tiny",
        "inferenceEngine": engine,
    }
    if connector is not None:
        spec["kvConnector"] = {"type": connector}
    return {
        "apiVersion": "networking.serving.volcano.sh/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": "router-side", "namespace": namespace},
        "spec": spec,
    }


def run(*documents: Spec) -> tuple[Spec, list[tuple[str, bool]]]:
    result = imported(dump_yaml(list(documents)))
    out = only_resource(result)
    notes = [(note.text, note.lost) for item in result.items for note in item.notes]
    return out, notes


def kinds(out: Spec) -> list[Any]:
    return [role.get("disaggregation") for role in out["spec"]["template"]["roles"]]


def test_kinds_from_the_engine_flags_are_written_out() -> None:
    out, notes = run(kthena(pd_specs.vllm_nixl()))
    assert kinds(out) == [{"kind": "prefill"}, {"kind": "decode"}]
    assert ("kind prefill is what the engine's --kv-transfer-config says, written out", False) in notes
    assert not any(lost for _, lost in notes)
    ms = serving(out)
    assert [role_pd(r) for r in ms.spec.template.roles] == [
        RolePd("prefill", "vllm"),
        RolePd("decode", "vllm"),
    ]
    assert {p["metadata"]["labels"][L.PD_ROLE] for p in group_pods(ms)} == {"prefill", "decode"}


def test_sglang_kinds_from_the_mode_flag() -> None:
    out, notes = run(kthena(pd_specs.sglang()))
    assert kinds(out) == [{"kind": "prefill"}, {"kind": "decode"}]
    assert ("kind decode is what the engine's --disaggregation-mode says, written out", False) in notes


def test_a_serving_without_pd_roles_is_left_alone() -> None:
    out, notes = run(kthena(pd_specs.named_only()))
    assert kinds(out) == [None, None]
    assert "template" in out["spec"] and "disaggregation" not in out["spec"]["template"]
    assert not any("disaggregation" in text or "pdGroup" in text for text, _ in notes)


def test_a_model_server_pd_group_gives_kinds_protocol_and_group_pairing() -> None:
    # The mock engines say nothing; the ModelServer picks the sides by a template label.
    out, notes = run(
        kthena(pd_specs.named_only()),
        model_server(
            {"app": "mock"},
            prefill={"example.com/side": "prefill"},
            decode={"example.com/side": "decode"},
            engine="SGLang",
            connector="mooncake",
        ),
    )
    assert kinds(out) == [{"kind": "prefill", "protocol": "sglang"}, {"kind": "decode", "protocol": "sglang"}]
    assert out["spec"]["template"]["disaggregation"] == {"pairing": "ServingGroup"}
    texts = [text for text, _ in notes]
    assert "kind prefill from ModelServer/router-side's pdGroup (the engine flags do not say it)" in texts
    assert any("groupKey modelserving.volcano.sh/group-name: pairing ServingGroup" in t for t in texts)
    assert not any(lost for _, lost in notes)
    ms = serving(out)
    assert [role_pd(r) for r in ms.spec.template.roles] == [
        RolePd("prefill", "sglang", 8998),
        RolePd("decode", "sglang"),
    ]
    assert {p["metadata"]["labels"][L.PD_PAIR_KEY] for p in group_pods(ms)} == {"mocked-0"}


def test_the_model_server_passes_through_unchanged() -> None:
    server = model_server({"modelserving.volcano.sh/name": "qwen-pd"})
    result = imported(dump_yaml([kthena(pd_specs.vllm_nixl()), server]))
    (passed,) = [item for item in result.items if not item.converted]
    assert passed.obj == server


def test_the_flags_win_over_a_contradicting_pd_group() -> None:
    out, notes = run(
        kthena(pd_specs.vllm_nixl()),
        model_server(
            {"modelserving.volcano.sh/name": "qwen-pd"},
            prefill={"modelserving.volcano.sh/role": "decode"},
            decode={"modelserving.volcano.sh/role": "prefill"},
        ),
    )
    assert kinds(out) == [{"kind": "prefill"}, {"kind": "decode"}]
    lost = [text for text, is_lost in notes if is_lost]
    assert any("pdGroup makes this role decode, but its engine flags make it prefill" in t for t in lost)


def test_name_group_key_pairs_across_the_serving() -> None:
    out, notes = run(
        kthena(pd_specs.vllm_nixl()),
        model_server({"modelserving.volcano.sh/name": "qwen-pd"}, group_key="modelserving.volcano.sh/name"),
    )
    assert "disaggregation" not in out["spec"]["template"]
    assert any("pairing ModelServing" in text for text, _ in notes)


def test_a_group_key_on_a_label_every_pod_shares_is_serving_wide_pairing() -> None:
    spec = pd_specs.named_only()
    out, notes = run(kthena(spec), model_server({"app": "mock"}, group_key="app"))
    assert "disaggregation" not in out["spec"]["template"]
    assert any("same value: pairing ModelServing" in text and not lost for text, lost in notes)


def test_a_group_key_on_another_label_is_a_loss() -> None:
    _, notes = run(kthena(pd_specs.named_only()), model_server({"app": "mock"}, group_key="example.com/side"))
    lost = [text for text, is_lost in notes if is_lost]
    assert any("pairs pods by label example.com/side" in t for t in lost)


def test_the_http_connector_is_a_loss() -> None:
    _, notes = run(kthena(pd_specs.vllm_nixl()), model_server({"app": "none"}, connector=None))
    assert not any("kvConnector" in text for text, _ in notes)  # it does not select the serving
    _, notes = run(
        kthena(pd_specs.vllm_nixl()),
        model_server({"modelserving.volcano.sh/name": "qwen-pd"}, connector=None),
    )
    assert any("kvConnector http" in text and lost for text, lost in notes)


def test_model_servers_of_other_namespaces_are_ignored() -> None:
    out, notes = run(
        kthena(pd_specs.named_only()), model_server({"app": "mock"}, namespace="elsewhere", connector="nixl")
    )
    assert kinds(out) == [None, None]
    assert not any("pdGroup" in text for text, _ in notes)


def test_the_cli_exits_0_when_the_flags_say_everything(tmp_path: Path) -> None:
    done = phalanx_import(tmp_path, dump_yaml([kthena(pd_specs.vllm_nixl())]))
    assert done.returncode == 0, done.stderr
    assert "kind: prefill" in done.stdout


def test_a_model_infer_gets_its_kinds_too() -> None:
    infer = {**pd_specs.vllm_nixl(), "apiVersion": "workload.volcano.sh/v1alpha1", "kind": "ModelInfer"}
    out, _ = run(infer)
    assert out["kind"] == "ModelServing"
    assert kinds(out) == [{"kind": "prefill"}, {"kind": "decode"}]
