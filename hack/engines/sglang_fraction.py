"""SGLang's own default --mem-fraction-static for a GPU size and parallel sizes; runs in the SGLang venv.

    ~/.cache/phalanx/engines/sglang-0.5.23/bin/python hack/engines/sglang_fraction.py GPU_MIB TP PP

Resolves SGLang's arguments for a stand-in Llama-3.1-8B-shaped model with SGLang's code, telling it the
GPU has GPU_MIB MiB (its nvidia-smi reading), and prints the fraction and the settings it came from.
Compare with phalanx.planner.sglang_memory.default_fraction. On a machine without a GPU SGLang resolves
for CUDA only in part: the prefill CUDA graphs come out disabled here (their 8 MiB per captured size
is then left out of SGLang's reserve), so SGLang's figure is slightly higher than Phalanx's, which
counts them as on a GPU node.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LLAMA_8B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_hidden_layers": 32,
    "max_position_embeddings": 131072,
    "vocab_size": 128256,
    "rms_norm_eps": 1e-5,
    "torch_dtype": "bfloat16",
    "rope_theta": 500000.0,
}


def main() -> None:
    gpu_mib, tp, pp = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    from sglang.srt.arg_groups import memory_hook
    from sglang.srt.arg_groups.model_override_base import resolved_view
    from sglang.srt.server_args import prepare_server_args

    memory_hook.get_device_memory_capacity = lambda device=None: gpu_mib  # what nvidia-smi would say
    with tempfile.TemporaryDirectory() as model:
        (Path(model) / "config.json").write_text(json.dumps(LLAMA_8B))
        args = ["--model-path", model, "--tp-size", str(tp), "--pp-size", str(pp), "--device", "cuda"]
        server_args = prepare_server_args(args)
        server_args.resolve_once()
        view = resolved_view(server_args)
        graphs = view.cuda_graph_config
        print(
            json.dumps(
                {
                    "mem_fraction_static": view.mem_fraction_static,
                    "chunked_prefill_size": view.chunked_prefill_size,
                    "decode_graph_max_bs": graphs.decode.max_bs,
                    "prefill_graph_backend": str(graphs.prefill.backend),
                    "prefill_graph_sizes": len(graphs.prefill.bs or []),
                }
            )
        )


if __name__ == "__main__":
    main()
