"""Command line and environment of `phalanx sim`, parsed into one immutable `SimConfig`."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass

from phalanx.sim.pdconfig import (
    DEFAULT_BOOTSTRAP_PORT,
    SGLANG_BACKENDS,
    SGLANG_MODES,
    KvTransfer,
    SglangDisaggregation,
    parse_kv_transfer_config,
    parse_sglang,
)

VERSION = "0.33.0"
"""The vLLM version the simulator's HTTP surface follows; `/version` reports it."""


@dataclass(frozen=True)
class SimConfig:
    served_model_names: tuple[str, ...]
    model: str
    host: str
    port: int
    join_port: int
    max_model_len: int
    max_body_bytes: int
    block_size: int
    num_gpu_blocks: int
    max_num_seqs: int
    max_num_batched_tokens: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int
    seed: int
    prefill_overhead: float
    prefill_time_per_token: float
    inter_token_latency: float
    itl_batch_factor: float
    zero_latency: bool
    startup_delay: float
    drain_timeout: float
    default_max_tokens: int
    join_timeout: float
    worker_index: int
    group_size: int
    entry_address: str | None
    kv_transfer: KvTransfer | None = None
    sglang: SglangDisaggregation | None = None
    kv_bandwidth_gb_s: float = 25.0
    kv_bytes_per_token: int = 131072
    fault_drop_leases: bool = False
    fault_refuse_pulls: bool = False
    fault_bootstrap_delay: float = 0.0

    @property
    def is_entry(self) -> bool:
        return self.worker_index == 0


# The body limit by default: room for a prompt of --max-model-len tokens however it is written
# (a token of text is at most 16 whitespace characters and 6 others: 168 bytes as JSON escapes),
# at least 8 MiB.
BODY_BYTES_PER_TOKEN = 256
MIN_BODY_BYTES = 8 * 2**20


def default_body_bytes(max_model_len: int) -> int:
    return max(MIN_BODY_BYTES, BODY_BYTES_PER_TOKEN * max_model_len)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _mib(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0.001:
        raise argparse.ArgumentTypeError(f"must be a number of MiB >= 0.001, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phalanx sim",
        usage="%(prog)s --served-model-name NAME [OPTIONS]",
        description="vLLM-compatible simulator: the vLLM HTTP API and metrics, no GPU.",
        allow_abbrev=False,  # vLLM flags must be spelled out; a prefix must not match silently
    )
    # Help texts are plain text (no markup); a default that is not a value ends the help as
    # "[default: (...)]", the way the rest of the CLI shows such defaults.
    model = parser.add_argument_group("model")
    model.add_argument(
        "--served-model-name",
        nargs="+",
        required=True,
        metavar="NAME",
        help="Names the API accepts; the first is used when a request omits `model` and labels the metrics.",
    )
    model.add_argument(
        "--model", default=None, help="The `root` shown in /v1/models. [default: (the first served name)]"
    )
    model.add_argument(
        "--max-model-len", type=_positive_int, default=4096, help="Context length: prompt + completion."
    )
    model.add_argument(
        "--max-body-mib",
        type=_mib,
        default=None,
        help="Largest request body in MiB; larger: 413. "
        "[default: (256 bytes per token of --max-model-len, at least 8)]",
    )
    model.add_argument("--seed", type=int, default=0, help="Seed of the generated text.")
    model.add_argument(
        "--tensor-parallel-size",
        type=_positive_int,
        default=1,
        help="Accepted and logged; it does not change latency (set the latency flags instead).",
    )
    model.add_argument(
        "--pipeline-parallel-size",
        type=_positive_int,
        default=1,
        help="Accepted and logged; it does not change latency (set the latency flags instead).",
    )
    # Accepted for vLLM compatibility and recorded; the simulator still runs one engine.
    model.add_argument(
        "--data-parallel-size",
        type=_positive_int,
        default=1,
        help="Accepted and recorded; the simulator still runs one engine replica.",
    )

    net = parser.add_argument_group("network")
    net.add_argument(
        "--host",
        default=None,
        help="Address of the HTTP and join listeners. [default: ($POD_IP, else 0.0.0.0)]",
    )
    net.add_argument("--port", type=_port, default=8000, help="HTTP port (entry only).")
    net.add_argument(
        "--join-port", type=_port, default=8001, help="Where the entry accepts workers and workers connect."
    )
    net.add_argument(
        "--join-timeout",
        type=_non_negative_float,
        default=600.0,
        help="Seconds a worker keeps retrying to reach the entry.",
    )
    net.add_argument(
        "--drain-timeout",
        type=_non_negative_float,
        default=30.0,
        help="Seconds SIGTERM waits for in-flight requests.",
    )
    net.add_argument(
        "--startup-delay",
        type=_non_negative_float,
        default=0.0,
        help="Seconds before /health turns 200, like loading weights.",
    )

    cache = parser.add_argument_group("KV cache and batching")
    cache.add_argument(
        "--kv-cache-tokens",
        type=_positive_int,
        default=131072,
        help="KV budget in tokens (rounded up to whole blocks).",
    )
    cache.add_argument("--block-size", type=_positive_int, default=16, help="Tokens per KV block.")
    cache.add_argument(
        "--num-gpu-blocks",
        type=_positive_int,
        default=None,
        help="KV budget in blocks; overrides --kv-cache-tokens.",
    )
    cache.add_argument(
        "--max-num-seqs", type=_positive_int, default=256, help="Most sequences running at once."
    )
    cache.add_argument(
        "--max-num-batched-tokens",
        type=_positive_int,
        default=8192,
        help="Token budget of one step; longer prompts are prefilled in chunks.",
    )

    latency = parser.add_argument_group("latency model (seconds)")
    latency.add_argument(
        "--prefill-overhead",
        type=_non_negative_float,
        default=0.030,
        help="Fixed cost of a step that prefills anything.",
    )
    latency.add_argument(
        "--prefill-time-per-token",
        type=_non_negative_float,
        default=0.00025,
        help="Cost per uncached prompt token.",
    )
    latency.add_argument(
        "--inter-token-latency",
        type=_non_negative_float,
        default=0.012,
        help="Cost of a decode step with one running sequence.",
    )
    latency.add_argument(
        "--itl-batch-factor",
        type=_non_negative_float,
        default=0.004,
        help="Relative growth of the decode cost per extra decoding sequence.",
    )
    latency.add_argument(
        "--zero-latency",
        action="store_true",
        help="Every compute time is 0; scheduling, KV cache and metrics are unchanged.",
    )
    latency.add_argument(
        "--default-max-tokens",
        type=_non_negative_int,
        default=256,
        help="max_tokens when a request omits it, capped by the context left; 0 = the whole context (vLLM).",
    )
    pd = parser.add_argument_group("prefill/decode disaggregation")
    pd.add_argument(
        "--kv-transfer-config",
        default=None,
        metavar="JSON",
        help="vLLM's KV connector config (kv_connector, kv_role, kv_load_failure_policy, "
        "kv_connector_extra_config.kv_lease_duration); the side channel listens on "
        "$VLLM_NIXL_SIDE_CHANNEL_HOST:$VLLM_NIXL_SIDE_CHANNEL_PORT.",
    )
    pd.add_argument(
        "--disaggregation-mode",
        choices=SGLANG_MODES,
        default="null",
        help="SGLang: which side of a disaggregated pair this engine serves.",
    )
    pd.add_argument(
        "--disaggregation-transfer-backend",
        choices=SGLANG_BACKENDS,
        default="mooncake",
        help="SGLang: the KV transfer backend (recorded; both behave the same here).",
    )
    pd.add_argument(
        "--disaggregation-bootstrap-port",
        type=_port,
        default=DEFAULT_BOOTSTRAP_PORT,
        help="SGLang: the prefill engine's bootstrap server port.",
    )
    pd.add_argument(
        "--kv-transfer-bandwidth",
        type=_non_negative_float,
        default=25.0,
        help="Simulator: GB/s of the decode engine's link for KV pulls (transfers queue on it); 0 = instant.",
    )
    pd.add_argument(
        "--kv-bytes-per-token",
        type=_positive_int,
        default=131072,
        help="Simulator: KV bytes per prompt token a transfer moves (an 8B model in bf16: 128 KiB).",
    )
    faults = parser.add_argument_group("fault injection (for routers' fallback paths)")
    faults.add_argument(
        "--fault-drop-leases",
        action="store_true",
        help="Prefill answers kv_transfer_params but frees the KV at once: every pull finds it expired.",
    )
    faults.add_argument(
        "--fault-refuse-pulls",
        action="store_true",
        help="The side channel / bootstrap server answers every pull or room with an error.",
    )
    faults.add_argument(
        "--fault-bootstrap-delay",
        type=_non_negative_float,
        default=0.0,
        help="Seconds the side channel / bootstrap server waits before answering a decode engine.",
    )
    return parser


def _env_int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}")
    return value


def parse_config(argv: list[str], env: Mapping[str, str]) -> SimConfig:
    """Parse flags and the pod environment; argparse exits with status 2 on any error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        worker_index = _env_int(env, "WORKER_INDEX", 0, 0)
        group_size = _env_int(env, "GROUP_SIZE", 1, 1)
    except ValueError as exc:
        parser.error(str(exc))
    if worker_index >= group_size:
        parser.error(f"WORKER_INDEX={worker_index} must be < GROUP_SIZE={group_size}")
    entry_address = env.get("ENTRY_ADDRESS") or None
    if worker_index > 0 and entry_address is None:
        parser.error("a worker (WORKER_INDEX >= 1) needs ENTRY_ADDRESS")

    block_size: int = args.block_size
    num_blocks: int = args.num_gpu_blocks or math.ceil(args.kv_cache_tokens / block_size)
    max_model_len: int = args.max_model_len
    if num_blocks * block_size < max_model_len:
        # vLLM refuses to start when one request of max_model_len cannot fit in the KV cache.
        parser.error(
            f"the KV cache ({num_blocks} blocks of {block_size} = {num_blocks * block_size} tokens) "
            f"cannot hold one request of --max-model-len {max_model_len}"
        )
    kv_transfer: KvTransfer | None = None
    sglang: SglangDisaggregation | None = None
    try:
        if args.kv_transfer_config is not None:
            kv_transfer = parse_kv_transfer_config(args.kv_transfer_config, env)
        sglang = parse_sglang(
            args.disaggregation_mode,
            args.disaggregation_transfer_backend,
            args.disaggregation_bootstrap_port,
            env,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if kv_transfer is not None and sglang is not None:
        parser.error(
            "--kv-transfer-config (vLLM) and --disaggregation-mode (SGLang) exclude each other; pick one"
        )
    zero = bool(args.zero_latency)
    names = tuple(args.served_model_name)
    max_body: float | None = args.max_body_mib
    return SimConfig(
        served_model_names=names,
        model=args.model or names[0],
        host=args.host or env.get("POD_IP") or "0.0.0.0",
        port=args.port,
        join_port=args.join_port,
        max_model_len=max_model_len,
        max_body_bytes=int(max_body * 2**20) if max_body else default_body_bytes(max_model_len),
        block_size=block_size,
        num_gpu_blocks=num_blocks,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        data_parallel_size=args.data_parallel_size,
        seed=args.seed,
        prefill_overhead=0.0 if zero else args.prefill_overhead,
        prefill_time_per_token=0.0 if zero else args.prefill_time_per_token,
        inter_token_latency=0.0 if zero else args.inter_token_latency,
        itl_batch_factor=args.itl_batch_factor,
        zero_latency=zero,
        startup_delay=args.startup_delay,
        drain_timeout=args.drain_timeout,
        default_max_tokens=args.default_max_tokens,
        join_timeout=args.join_timeout,
        worker_index=worker_index,
        group_size=group_size,
        entry_address=entry_address,
        kv_transfer=kv_transfer,
        sglang=sglang,
        kv_bandwidth_gb_s=0.0 if zero else args.kv_transfer_bandwidth,
        kv_bytes_per_token=args.kv_bytes_per_token,
        fault_drop_leases=args.fault_drop_leases,
        fault_refuse_pulls=args.fault_refuse_pulls,
        fault_bootstrap_delay=args.fault_bootstrap_delay,
    )
