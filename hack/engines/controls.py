"""Hand-written engine command lines with a known verdict, checked beside the rendered ones.

They show that the check can fail (each rejected one names the rule that rejects it) and pin the
prefill/decode flag forms the engines accept, independent of what our recipes render today.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_MODEL = ["meta-llama/Llama-3.1-8B-Instruct", "--port", "8000"]
_SGLANG = ["--model-path", "meta-llama/Llama-3.1-8B-Instruct", "--port", "8000"]
_405B = ["meta-llama/Llama-3.1-405B-Instruct", "--port", "8000", "--tensor-parallel-size", "8"]
_NATIVE_2NODE = ["--nnodes", "2", "--master-addr", "10.0.0.5", "--master-port", "29501"]
_DOTTED = ["--kv-transfer-config.kv_connector", "NixlConnector"]
_NIXL_ENV = {"VLLM_NIXL_SIDE_CHANNEL_HOST": "10.0.0.7", "VLLM_NIXL_SIDE_CHANNEL_PORT": "5600"}


@dataclass(frozen=True)
class Control:
    name: str
    engine: str
    argv: list[str]
    expect_ok: bool
    why: str
    env: dict[str, str] = field(default_factory=dict)
    gpus: int | None = None  # GPUs of the pod's node, for vLLM's one-node world-size check


def _kv(**config: Any) -> list[str]:
    return [*_MODEL, "--kv-transfer-config", json.dumps(config)]


CONTROLS = (
    Control(
        "nixl-prefill",
        "vllm",
        _kv(
            kv_connector="NixlConnector",
            kv_role="kv_producer",
            kv_load_failure_policy="fail",
            kv_connector_extra_config={"backends": ["UCX"], "kv_lease_duration": 30},
        ),
        True,
        "NixlConnector producer with a lease and its side channel",
        _NIXL_ENV,
    ),
    Control(
        "nixl-decode-recompute",
        "vllm",
        _kv(kv_connector="NixlConnector", kv_role="kv_consumer", kv_load_failure_policy="recompute"),
        True,
        "NixlConnector consumer that recomputes on a failed KV load",
        _NIXL_ENV,
    ),
    Control(
        "lmcache-prefill",
        "vllm",
        _kv(
            kv_connector="LMCacheConnectorV1",
            kv_role="kv_producer",
            kv_connector_extra_config={"discard_partial_chunks": False, "lmcache_rpc_port": "producer1"},
        ),
        True,
        "LMCacheConnectorV1: extra config is free-form",
    ),
    Control(
        "lmcache-decode-env",
        "vllm",
        _kv(kv_connector="LMCacheConnectorV1", kv_role="kv_consumer"),
        True,
        "LMCache PD receiver configured by LMCACHE_* env",
        {"LMCACHE_ENABLE_PD": "True", "LMCACHE_PD_ROLE": "receiver", "LMCACHE_PD_PEER_INIT_PORT": "7300"},
    ),
    Control(
        "lmcache-misspelt-env",
        "vllm",
        _kv(kv_connector="LMCacheConnectorV1", kv_role="kv_producer"),
        False,
        "LMCACHE_PD_BUFER_SIZE is not an env name LMCache reads",
        {"LMCACHE_ENABLE_PD": "True", "LMCACHE_PD_BUFER_SIZE": "1073741824"},
    ),
    Control(
        "mooncake-vllm-both",
        "vllm",
        _kv(kv_connector="MooncakeConnector", kv_role="kv_both"),
        True,
        "vLLM's own MooncakeConnector, kv_both",
    ),
    Control(
        "p2pnccl-old-form",
        "vllm",
        _kv(
            kv_connector="P2pNcclConnector",
            kv_role="kv_producer",
            kv_buffer_size="1e1",
            kv_port="21001",
            kv_connector_extra_config={"proxy_ip": "10.0.0.9", "proxy_port": "30001", "http_port": "8000"},
        ),
        False,
        "kv_buffer_size is no KVTransferConfig field any more (extra fields are forbidden)",
    ),
    Control(
        "p2pnccl-current-fields",
        "vllm",
        _kv(kv_connector="P2pNcclConnector", kv_role="kv_consumer", kv_port=21001),
        False,
        "P2pNcclConnector is not a registered connector",
    ),
    Control(
        "bad-kv-role",
        "vllm",
        _kv(kv_connector="NixlConnector", kv_role="producer"),
        False,
        "kv_role must be kv_producer, kv_consumer or kv_both",
    ),
    Control(
        "connector-without-role",
        "vllm",
        _kv(kv_connector="NixlConnector"),
        False,
        "kv_role is required once kv_connector is set",
    ),
    Control(
        "bad-failure-policy",
        "vllm",
        _kv(kv_connector="NixlConnector", kv_role="kv_both", kv_load_failure_policy="retry"),
        False,
        "kv_load_failure_policy is fail or recompute",
    ),
    Control(
        "kv-config-not-json",
        "vllm",
        [*_MODEL, "--kv-transfer-config", "kv_connector=NixlConnector"],
        False,
        "--kv-transfer-config takes JSON",
    ),
    Control(
        "misspelt-nixl-env",
        "vllm",
        _kv(kv_connector="NixlConnector", kv_role="kv_both"),
        False,
        "VLLM_NIXL_SIDE_CHANEL_PORT is not an env name vLLM reads",
        {"VLLM_NIXL_SIDE_CHANEL_PORT": "5600"},
    ),
    Control(
        "dotted-kv-flags",
        "vllm",
        [*_MODEL, *_DOTTED, "--kv-transfer-config.kv_role", "kv_producer"],
        True,
        "one JSON key per flag, dotted, the key spelt as in the JSON",
    ),
    Control(
        "dotted-kv-flag-hyphen-key",
        "vllm",
        [*_MODEL, *_DOTTED, "--kv-transfer-config.kv-role", "kv_producer"],
        False,
        "a dotted key is taken as written: kv-role is no KVTransferConfig field",
    ),
    Control(
        "underscored-kv-flag",
        "vllm",
        [
            *_MODEL,
            "--kv_transfer_config",
            json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_producer"}),
        ],
        True,
        "vLLM's parser turns _ into - in flag names",
    ),
    Control(
        "equals-kv-flag",
        "vllm",
        [
            *_MODEL,
            "--kv-transfer-config=" + json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_consumer"}),
        ],
        True,
        "--flag=value form",
    ),
    Control(
        "abbreviated-kv-flag",
        "vllm",
        [*_MODEL, "--kv-transfer", json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_producer"})],
        True,
        "argparse takes a unique prefix: --kv-transfer sets --kv-transfer-config",
    ),
    Control(
        "unknown-flag",
        "vllm",
        [*_MODEL, "--kv-role", "kv_producer"],
        False,
        "vLLM has no --kv-role flag",
    ),
    Control(
        "sglang-prefill-mooncake",
        "sglang",
        [
            *_SGLANG,
            "--disaggregation-mode",
            "prefill",
            "--disaggregation-transfer-backend",
            "mooncake",
            "--disaggregation-bootstrap-port",
            "8998",
        ],
        True,
        "SGLang prefill server with its bootstrap port",
    ),
    Control(
        "sglang-decode-nixl",
        "sglang",
        [*_SGLANG, "--disaggregation-mode", "decode", "--disaggregation-transfer-backend", "nixl"],
        True,
        "SGLang decode server over NIXL",
    ),
    Control(
        "sglang-prefill-mooncake-tcp",
        "sglang",
        [*_SGLANG, "--disaggregation-mode", "prefill", "--disaggregation-transfer-backend", "mooncake_tcp"],
        True,
        "mooncake over TCP (no RDMA)",
    ),
    Control(
        "sglang-abbreviated-flag",
        "sglang",
        [*_SGLANG, "--disaggregation-mode", "prefill", "--disaggregation-bootstrap", "9000"],
        True,
        "argparse takes a unique prefix: --disaggregation-bootstrap sets the bootstrap port",
    ),
    Control(
        "sglang-underscored-flag",
        "sglang",
        [*_SGLANG, "--disaggregation_mode", "prefill"],
        False,
        "SGLang's parser knows flags with - only",
    ),
    Control(
        "sglang-bad-mode",
        "sglang",
        [*_SGLANG, "--disaggregation-mode", "prefil"],
        False,
        "--disaggregation-mode is null, prefill or decode",
    ),
    Control(
        "sglang-bad-backend",
        "sglang",
        [*_SGLANG, "--disaggregation-mode", "decode", "--disaggregation-transfer-backend", "ucx"],
        False,
        "ucx is no transfer backend choice",
    ),
    Control(
        "sglang-prefill-fake",
        "sglang",
        [*_SGLANG, "--disaggregation-mode", "prefill", "--disaggregation-transfer-backend", "fake"],
        False,
        "a prefill server refuses the fake backend (resolution check)",
    ),
    # Issue 16's recipe defects, each with the argv before and after the fix.
    Control(
        "vllm-online-fp8-old-flag",
        "vllm",
        [*_MODEL, "--quantization", "fp8"],
        False,
        "vLLM 0.33 deprecates --quantization fp8 for bf16 weights quantised when loaded",
    ),
    Control(
        "vllm-online-fp8-per-tensor",
        "vllm",
        [*_MODEL, "--quantization", "fp8_per_tensor"],
        True,
        "the online fp8 method of vLLM 0.33",
    ),
    Control(
        "vllm-16-gpus-on-one-8-gpu-node",
        "vllm",
        [*_405B, "--pipeline-parallel-size", "2"],
        False,
        "without Ray or --nnodes, vLLM wants tp x pp GPUs on one node",
        gpus=8,
    ),
    Control(
        "vllm-16-gpus-native-2-nodes",
        "vllm",
        [*_405B, "--pipeline-parallel-size", "2", *_NATIVE_2NODE, "--node-rank", "0"],
        True,
        "vLLM's own launcher over two 8-GPU nodes",
        gpus=8,
    ),
    Control(
        "vllm-native-rendezvous-timeout",
        "vllm",
        [
            *[*_405B, "--pipeline-parallel-size", "2", *_NATIVE_2NODE],
            *["--node-rank", "1", "--headless", "--distributed-timeout-seconds", "10800"],
        ],
        True,
        "the group's rendezvous timeout (PyTorch's 600 s otherwise)",
        {"VLLM_ENGINE_READY_TIMEOUT_S": "10800"},
        gpus=8,
    ),
    Control(
        "sglang-long-parallel-names",
        "sglang",
        [*_SGLANG, "--tensor-parallel-size", "2", "--pipeline-parallel-size", "2"],
        True,
        "SGLang takes --tensor-parallel-size and --pipeline-parallel-size for --tp-size and --pp-size",
    ),
    Control(
        "sglang-nccl-init-addr",
        "sglang",
        [*_SGLANG, "--nnodes", "2", "--node-rank", "1", "--nccl-init-addr", "10.0.0.5:20000"],
        True,
        "SGLang takes --nccl-init-addr for --dist-init-addr",
    ),
)
