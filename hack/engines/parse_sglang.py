"""Parse `python -m sglang.launch_server` argument lists the way SGLang does; runs in the SGLang venv.

Usage (check_argv.py calls it): python parse_sglang.py IN.json OUT.json (see engine_side.py); argv is
what follows `-m sglang.launch_server`. Stages, each as far as a CPU-only machine with no network gets:
  parse     prepare_server_args(argv): SGLang's own parser (ServerArgs.add_cli_args) and
            ServerArgs.from_cli_args, exactly what launch_server calls
  env       every SGLANG_* env name is one SGLang declares (sglang.srt.environ)
  resolve   ServerArgs.resolve_once(), the cross-flag checks (the PD ones included), with the model
            replaced by a stand-in directory
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine_side import check_item, require_known_env, run

_SHOWN = (
    "disaggregation_mode",
    "disaggregation_transfer_backend",
    "disaggregation_bootstrap_port",
    "tp_size",
    "pp_size",
    "dp_size",
    "nnodes",
    "node_rank",
    "port",
)


def _declared_env() -> set[str]:
    from sglang.srt import environ

    return {name for name in (*dir(environ.envs), *dir(environ)) if name.startswith("SGLANG_")}


def _shown(server_args: Any) -> dict[str, Any]:
    pd = server_args.disaggregation_mode != "null"
    return {
        name.replace("disaggregation_", "pd_"): getattr(server_args, name)
        for name in _SHOWN
        if (pd or not name.startswith("disaggregation_"))
        and (getattr(server_args, name, None) not in (None, 1, 0) or name == "tp_size")
    }


def check(item: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    from sglang.srt.server_args import prepare_server_args

    env_names = list(item["env"])

    def stages(server_args: Any) -> Iterator[str]:
        yield "env"
        require_known_env(env_names, "SGLANG_", _declared_env(), "SGLang")
        yield "resolve"
        server_args.model_path = server_args.tokenizer_path = str(model_dir)
        server_args.revision = None  # the stand-in directory has no revisions
        if server_args.device is None:  # no accelerator here: resolve for the CPU device
            server_args.device = "cpu"
        server_args.resolve_once()

    return check_item(item, prepare_server_args, _shown, stages)


if __name__ == "__main__":
    run(check)
