"""Parse `vllm serve` argument lists the way vLLM itself does at start-up; runs inside the vLLM venv.

Usage (check_argv.py calls it): python parse_vllm.py IN.json OUT.json (see engine_side.py); argv is
what follows `vllm serve`. Stages, each as far as a CPU-only machine with no network gets:
  parse      the `vllm serve` sub-parser (FlexibleArgumentParser + make_arg_parser), built as the `vllm`
             command builds it, including --kv-transfer-config's JSON validation (KVTransferConfig)
  validate   ServeSubcommand.validate (validate_parsed_serve_args)
  engine     AsyncEngineArgs.from_cli_args
  connector  the kv_connector name is one vLLM can build (its connector registry)
  env        every VLLM_* env name is one vLLM reads (vllm.envs), every LMCACHE_* one LMCache reads
  config     create_engine_config, so that the cross-flag checks of the model, parallel and KV
             transfer configs run; for a pod that requests GPUs its parallel config is built as on a
             CUDA node with that many GPUs (vLLM's check that one node holds the world size)
  quant      with --quantization, vLLM's get_quant_config for the model; a deprecation it logs
             (`--quantization fp8` for online quantisation in 0.33) is a rejection
From `engine` on, the model is a stand-in directory (a small Llama config.json): no hub here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine_side import check_item, require_known_env, run

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

_PARALLEL = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "nnodes", "node_rank")


def _use_cpu_platform_when_no_gpu() -> None:
    """With no GPU (no libcuda) vLLM cannot tell its platform and refuses to build its parser; its own
    `vllm bench` then switches to the CPU platform, and so do we. Device-dependent defaults
    (kv_buffer_device, the device type) are then the CPU's, not CUDA's."""
    from vllm import platforms

    if platforms.current_platform.is_unspecified():
        from vllm.platforms.cpu import CpuPlatform

        platforms.current_platform = CpuPlatform()


def _serve_parser() -> tuple[argparse.ArgumentParser, Any]:
    _use_cpu_platform_when_no_gpu()
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(description="vLLM CLI")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    serve = ServeSubcommand()
    serve.subparser_init(subparsers)
    return parser, serve


class _GpuNode:
    """The CPU platform, except that it says it is a CUDA node with the pod's GPUs."""

    def __init__(self, platform: Any, gpus: int) -> None:
        self._platform, self._gpus = platform, gpus

    def is_cuda(self) -> bool:
        return True

    def device_count(self) -> int:
        return self._gpus

    def __getattr__(self, name: str) -> Any:
        return getattr(self._platform, name)


@contextlib.contextmanager
def _on_gpu_node(gpus: int | None) -> Iterator[None]:
    """While vLLM builds its parallel config, the platform is a CUDA node with `gpus` GPUs: vLLM's own
    check that a world size without Ray or --nnodes fits one node then runs as on the pod's node.
    Only that constructor sees it; everything else keeps the CPU platform."""
    if not gpus:
        yield
        return
    from vllm.config import parallel

    original = parallel.ParallelConfig.__post_init__

    def post_init(self: Any) -> None:
        saved = parallel.current_platform
        parallel.current_platform = _GpuNode(saved, gpus)
        try:
            original(self)
        finally:
            parallel.current_platform = saved

    parallel.ParallelConfig.__post_init__ = post_init  # type: ignore[method-assign]
    try:
        yield
    finally:
        parallel.ParallelConfig.__post_init__ = original  # type: ignore[method-assign]


class _Deprecations(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "deprecated" in message:
            self.messages.append(message)


def _check_quantization(config: Any) -> None:
    """Runs vLLM's get_quant_config for the configured model; a deprecation warning is an error."""
    from vllm import logger as vllm_logger
    from vllm.model_executor.model_loader.weight_utils import get_quant_config

    vllm_logger._print_warning_once.cache_clear()  # warned once per process otherwise
    root = logging.getLogger("vllm")
    handler, level = _Deprecations(), root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        get_quant_config(config.model_config, config.load_config)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    if handler.messages:
        raise ValueError(handler.messages[0])


def _shown(args: argparse.Namespace) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    kv = getattr(args, "kv_transfer_config", None)
    if kv is not None:
        shown["kv_connector"] = kv.kv_connector
        shown["kv_role"] = kv.kv_role
        shown["kv_load_failure_policy"] = kv.kv_load_failure_policy
        if kv.kv_connector_extra_config:
            shown["extra"] = json.dumps(kv.kv_connector_extra_config, sort_keys=True)
    for name in _PARALLEL:
        value = getattr(args, name, None)
        if value not in (None, 1, 0) or name == "tensor_parallel_size":
            shown[name.replace("_parallel_size", "")] = value
    if getattr(args, "headless", False):
        shown["headless"] = True
    if getattr(args, "quantization", None):
        shown["quantization"] = args.quantization
    shown["port"] = args.port
    return shown


def _lmcache_env_names() -> set[str]:
    """The LMCACHE_* names LMCache reads: one per config key (and deprecated alias), plus the names its
    code and vLLM's LMCache integration spell out. Empty when lmcache is not installed."""
    try:
        import lmcache
        from lmcache.v1 import config
    except ImportError:
        return set()
    from vllm.distributed import kv_transfer

    names = {f"LMCACHE_{key.upper()}" for key in (*config._CONFIG_DEFINITIONS, *config._CONFIG_ALIASES)}
    for package in (lmcache, kv_transfer):
        for source in Path(package.__path__[0]).rglob("*.py"):
            names.update(re.findall(r"LMCACHE_[A-Z0-9_]*[A-Z0-9]", source.read_text(errors="replace")))
    return names


def check(item: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    parser, serve = _serve_parser()
    env_names = list(item["env"])

    def stages(args: argparse.Namespace) -> Iterator[str]:
        from vllm import envs
        from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
        from vllm.engine.arg_utils import AsyncEngineArgs

        yield "validate"
        serve.validate(args)
        # ServeSubcommand.cmd would now take the positional model; a stand-in directory replaces it,
        # as EngineArgs resolves the model at once and there is no hub to ask here.
        args.model = args.model_tag = args.tokenizer = str(model_dir)
        args.revision = None
        yield "engine"
        engine_args = AsyncEngineArgs.from_cli_args(args)
        yield "connector"
        kv = engine_args.kv_transfer_config
        named = kv is not None and kv.kv_connector is not None and not kv.kv_connector_module_path
        if named and kv.kv_connector not in KVConnectorFactory._registry:
            raise ValueError(f"Unsupported connector type: {kv.kv_connector} (not registered in vLLM)")
        yield "env"
        require_known_env(env_names, "VLLM_", envs.environment_variables, "vLLM")
        if any(name.startswith("LMCACHE_") for name in env_names):
            lmcache_names = _lmcache_env_names()
            if not lmcache_names:
                raise ValueError("LMCACHE_* env set but lmcache is not installed here to check them")
            require_known_env(env_names, "LMCACHE_", lmcache_names, "LMCache")
        yield "config"
        with _on_gpu_node(item.get("gpus")):
            config = engine_args.create_engine_config()
        if config.model_config.quantization is not None:
            yield "quant"
            _check_quantization(config)

    return check_item(item, lambda argv: parser.parse_args(["serve", *argv]), _shown, stages)


if __name__ == "__main__":
    run(check)
