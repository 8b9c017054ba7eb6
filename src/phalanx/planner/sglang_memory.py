"""SGLang's memory model (0.5.23): what `--mem-fraction-static` means and the most SGLang lets it be.

SGLang's fraction is the share of the GPU for the weights and the KV cache pool together; everything
else (activations, CUDA graphs, communication buffers) lives in a reserve outside it. When the flag is
not given, SGLang computes the fraction as (GPU memory - reserve) / GPU memory, in MiB, rounded to 3
places, with the reserve (`handle_gpu_memory_settings`, for a CUDA GPU, no DP attention, speculative
decoding or DeepEP, without the opt-in post-capture sizing):

    512 + 1.5 x activation tokens + tp x pp / 8 x 1024
        + 2 x decode CUDA-graph max batch + 8 x prefill CUDA-graph sizes (1536 with MLA instead)

where the activation tokens are the chunked-prefill size (at least 2048), and the chunked-prefill size
and decode max batch follow the GPU's memory (the tiers below). SGLang also keeps at least 10 GiB back
on GPUs above 60 GiB, which these defaults always exceed there (8192 tokens alone are 12 GiB). Asking
for more than that default leaves the runtime less than SGLang plans for, so Phalanx never does: the
fraction it passes is the smaller of gpuMemoryUtilization and SGLang's own.

The reserve of an aggregated server is the largest: a prefill server has no decode CUDA graphs and a
decode server fewer activation tokens and no prefill graphs, so the same fraction suits both sides.
Not modelled: a vision encoder's extra share (SGLang lowers the fraction by about 5% more for it).
"""

from __future__ import annotations

from typing import Final

MIB: Final = 1 << 20
_PP_PREFILL_GRAPH_TOKENS: Final = 8192  # prefill graphs stop here with pipeline stages
_MLA_PREFILL_GRAPH_MIB: Final = 1.5 * 1024

# (below this many MiB, chunked-prefill size, decode CUDA-graph max batch for tp < 4, for tp >= 4)
_TIERS: Final = (
    (20 * 1024, 2048, 8, 8),  # T4, RTX 4080
    (35 * 1024, 4096, 48, 160),  # A10, L4, RTX 4090 and 5090
    (60 * 1024, 4096, 32, 160),  # A100 40 GB, L40(S), A6000
    (90 * 1024, 8192, 256, 512),  # H100, A100 80 GB
    (160 * 1024, 8192, 256, 512),  # H200, H20
)
_LARGEST: Final = (16384, 512, 512)  # B200, MI300X


def _tier(gpu_mib: float, tp: int) -> tuple[int, int]:
    """(chunked-prefill size, decode CUDA-graph max batch) SGLang picks for this GPU."""
    for below, chunk, small_tp, large_tp in _TIERS:
        if gpu_mib < below:
            return chunk, small_tp if tp < 4 else large_tp
    chunk, small_tp, large_tp = _LARGEST
    return chunk, small_tp if tp < 4 else large_tp


def prefill_graph_sizes(max_tokens: int) -> int:
    """How many prefill CUDA graphs SGLang captures up to `max_tokens` (its capture-size ladder)."""
    ladder = [
        *range(4, 33, 4),
        *range(48, 257, 16),
        *range(288, 513, 32),
        *range(576, 1025, 64),
        *range(1280, 4097, 256),
        *range(4608, max_tokens + 1, 512),
    ]
    return sum(1 for size in ladder if size <= max_tokens)


def reserve_mib(gpu_mib: float, tp: int, pp: int, *, mla: bool) -> float:
    """SGLang's reserve outside --mem-fraction-static for an aggregated server, in MiB."""
    chunk, decode_max_batch = _tier(gpu_mib, tp)
    reserve = 512 + max(chunk, 2048) * 1.5 + tp * pp / 8 * 1024 + decode_max_batch * 2
    if mla:
        reserve += _MLA_PREFILL_GRAPH_MIB
    else:
        graph_tokens = min(chunk, _PP_PREFILL_GRAPH_TOKENS) if pp > 1 else chunk
        reserve += prefill_graph_sizes(graph_tokens) * 8
    return reserve


def default_fraction(gpu_memory_bytes: int, tp: int, pp: int, *, mla: bool) -> float:
    """--mem-fraction-static as SGLang 0.5.23 computes it when it is not given."""
    gpu_mib = gpu_memory_bytes / MIB
    return round((gpu_mib - reserve_mib(gpu_mib, tp, pp, mla=mla)) / gpu_mib, 3)


def static_fraction(gpu_memory_bytes: int, tp: int, pp: int, *, mla: bool, utilization: float) -> float:
    """The fraction Phalanx passes: gpuMemoryUtilization, never above SGLang's own."""
    return min(utilization, default_fraction(gpu_memory_bytes, tp, pp, mla=mla))
