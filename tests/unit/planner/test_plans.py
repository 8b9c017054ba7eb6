"""The planner table: each expected value is worked out by hand below, with the arithmetic in plain sight.

Conventions used in the arithmetic (see phalanx/planner/memory.py):
  usable   = gpu GiB * 9 // 10                        (gpu_memory_utilization 0.9)
  overhead = 1 GiB + 0.5 GiB + 8192 tokens * hidden * 2 B * 4 buffers
  weights  = (vocab x hidden matrices * 2 B + decoder params on the heaviest stage * bytes/param) / tp
  KV/token = 2 * stage layers * KV heads per rank * head_dim * 2 B   (MLA: stage layers * 576 * 2 B)
"""

from __future__ import annotations

from typing import Any

from phalanx.planner import GiB, Plan, PlanRequest, get_model, make_plan, shape_for_instance

USABLE_80 = 80 * GiB * 9 // 10  # H100 80GB
USABLE_94 = 94 * GiB * 9 // 10  # H100 NVL
USABLE_141 = 141 * GiB * 9 // 10  # H200


def overhead(hidden: int) -> int:
    return GiB + GiB // 2 + 8192 * hidden * 2 * 4


def plan(model: str, instance: str, **kwargs: Any) -> Plan:
    return make_plan(PlanRequest(model=get_model(model), shape=shape_for_instance(instance), **kwargs))


def assert_memory(p: Plan, *, usable: int, weights: int, runtime: int, kv_per_token: int) -> None:
    kv_cache = usable - weights - runtime
    assert p.memory.usable == usable
    assert p.memory.weights == weights
    assert p.memory.runtime_overhead == runtime
    assert p.memory.kv_bytes_per_token == kv_per_token
    assert p.memory.kv_cache == kv_cache
    assert p.kv_cache_tokens == kv_cache // kv_per_token
    assert p.max_concurrent_sequences == round((kv_cache // kv_per_token) / p.max_model_len, 2)


# --- llama-3.3-70b-instruct on Standard_NC80adis_H100_v5 (2 x H100 NVL 94 GiB per node) ---------------

LLAMA_70B_PARAMS = 70_553_706_496
LLAMA_70B_MATRIX = 128256 * 8192  # one vocab x hidden matrix (embedding or LM head, untied)


def test_llama_70b_on_nc80adis_with_8k_context_fits_one_node() -> None:
    p = plan("llama-3.3-70b-instruct", "Standard_NC80adis_H100_v5", max_model_len=8192)
    # tp = 2 GPUs per node (64 heads % 2 == 0), pp = 1 node * (2 // 2) = 1
    assert (p.nodes, p.tensor_parallel_size, p.pipeline_parallel_size) == (1, 2, 1)
    weights = LLAMA_70B_PARAMS * 2 // 2  # pp 1: every param at 2 B (bf16), split over tp 2
    kv_per_token = 2 * 80 * (8 // 2) * 128 * 2  # K,V x 80 layers x 4 KV heads per rank x 128 x 2 B = 160 KiB
    assert_memory(p, usable=USABLE_94, weights=weights, runtime=overhead(8192), kv_per_token=kv_per_token)
    assert overhead(8192) == 2 * GiB
    assert p.kv_cache_tokens == 110_701  # (84.6 - 65.7 - 2.0) GiB / 160 KiB
    assert p.max_concurrent_sequences == 13.51
    # 1 node fits, but its KV cache holds 108 sequences of 1024 tokens: a second node serves twice as much
    (warning,) = p.warnings
    assert warning.startswith("1 node leaves KV cache for 108 sequences of 1024 tokens per replica: 2 nodes")
    assert warning.endswith("pin 2 nodes if throughput matters more than the node count")


def test_llama_70b_on_nc80adis_with_full_context_needs_two_nodes() -> None:
    p = plan("llama-3.3-70b-instruct", "Standard_NC80adis_H100_v5")
    # One node: the 131072-token sequence needs 131072 * 160 KiB = 20 GiB of KV, but only ~16.9 GiB is left.
    one_node_left = USABLE_94 - LLAMA_70B_PARAMS * 2 // 2 - overhead(8192)
    assert one_node_left < 131072 * (2 * 80 * 4 * 128 * 2)
    # Two nodes: tp 2 inside each, pp = 2 nodes * (2 // 2) = 2; the heaviest stage has 80 / 2 = 40 layers
    # plus one vocab x hidden matrix.
    assert (p.nodes, p.tensor_parallel_size, p.pipeline_parallel_size, p.max_model_len) == (2, 2, 2, 131072)
    decoder = LLAMA_70B_PARAMS - 2 * LLAMA_70B_MATRIX  # everything but embedding and LM head
    weights = (LLAMA_70B_MATRIX * 2 + decoder * 40 // 80 * 2) // 2
    kv_per_token = 2 * 40 * (8 // 2) * 128 * 2  # 80 KiB
    assert_memory(p, usable=USABLE_94, weights=weights, runtime=overhead(8192), kv_per_token=kv_per_token)
    assert p.kv_cache_tokens == 652_029
    assert p.max_concurrent_sequences == 4.97


# --- llama-3.1-405b-instruct on p5.48xlarge (8 x H100 80 GiB) ----------------------------------------

LLAMA_405B_PARAMS = 405_853_388_800
LLAMA_405B_MATRIX = 128256 * 16384


def test_llama_405b_needs_two_p5_nodes_tp8_pp2() -> None:
    # One node: 405.85B params * 2 B / 8 = 94.5 GiB of weights per GPU, more than the 72 GiB usable.
    assert LLAMA_405B_PARAMS * 2 // 8 > USABLE_80
    decoder = LLAMA_405B_PARAMS - 2 * LLAMA_405B_MATRIX
    weights = (LLAMA_405B_MATRIX * 2 + decoder * 63 // 126 * 2) // 8  # heaviest stage: 63 of 126 layers
    kv_per_token = 2 * 63 * (8 // 8) * 128 * 2  # one KV head per rank: 31.5 KiB
    for max_model_len, concurrency in ((8192, 90.42), (None, 5.65)):
        p = plan("llama-3.1-405b-instruct", "p5.48xlarge", max_nodes=2, max_model_len=max_model_len)
        assert (p.nodes, p.tensor_parallel_size, p.pipeline_parallel_size) == (2, 8, 2)
        assert_memory(
            p, usable=USABLE_80, weights=weights, runtime=overhead(16384), kv_per_token=kv_per_token
        )
        assert p.kv_cache_tokens == 740_742
        assert p.max_concurrent_sequences == concurrency
        assert p.warnings == ()  # 2 of at most 2 nodes: nothing to say


def test_llama_405b_on_nd96isr_h100_is_the_same_plan() -> None:
    azure = plan("llama-3.1-405b-instruct", "Standard_ND96isr_H100_v5")
    aws = plan("llama-3.1-405b-instruct", "p5.48xlarge")
    assert (azure.nodes, azure.tensor_parallel_size, azure.pipeline_parallel_size) == (2, 8, 2)
    assert azure.memory == aws.memory
    assert azure.instance_type == "Standard_ND96isr_H100_v5"


# --- deepseek-v3 / r1 (fp8 checkpoint, MLA) ------------------------------------------------------------

DEEPSEEK_PARAMS = 671_026_419_200
DEEPSEEK_MATRIX = 129280 * 7168
DEEPSEEK_DECODER = DEEPSEEK_PARAMS - 2 * DEEPSEEK_MATRIX


def test_deepseek_v3_fits_one_h200_node() -> None:
    p = plan("deepseek-v3", "Standard_ND96isr_H200_v5")
    assert (p.nodes, p.tensor_parallel_size, p.pipeline_parallel_size, p.dtype) == (1, 8, 1, "fp8")
    # Embedding and LM head stay bf16 (2 B); every other weight is fp8 (1 B); split over tp 8.
    weights = (2 * DEEPSEEK_MATRIX * 2 + DEEPSEEK_DECODER * 1) // 8
    kv_per_token = 61 * (512 + 64) * 2  # MLA latent, replicated on all 8 ranks: 68.6 KiB
    assert_memory(p, usable=USABLE_141, weights=weights, runtime=overhead(7168), kv_per_token=kv_per_token)
    assert p.max_model_len == 163840
    assert p.kv_cache_tokens == 712_481
    assert p.max_concurrent_sequences == 4.35


def test_deepseek_r1_needs_two_h100_nodes() -> None:
    # One node: (3.7 GB bf16 edges + 669 GB fp8) / 8 = 78.3 GiB > 72 GiB usable.
    assert (2 * DEEPSEEK_MATRIX * 2 + DEEPSEEK_DECODER) // 8 > USABLE_80
    p = plan("deepseek-r1", "Standard_ND96isr_H100_v5")
    assert (p.nodes, p.tensor_parallel_size, p.pipeline_parallel_size) == (2, 8, 2)
    # The heaviest stage holds 31 of 61 layers, all MoE. A MoE layer has more params than a dense one by
    # 257 experts (256 routed + 1 shared) * 3 * hidden * 2048 + the router (and its 256 biases),
    # minus the dense FFN's 3 * hidden * 18432.
    deficit = (256 + 1) * 3 * 7168 * 2048 + 7168 * 256 + 256 - 3 * 7168 * 18432
    moe_layers_total = DEEPSEEK_DECODER + 3 * deficit  # the decoder if all 61 layers were MoE
    stage = -(-moe_layers_total * 31 // 61)  # rounded up
    weights = -(-(DEEPSEEK_MATRIX * 2 + stage * 1) // 8)
    kv_per_token = 31 * (512 + 64) * 2
    assert_memory(p, usable=USABLE_80, weights=weights, runtime=overhead(7168), kv_per_token=kv_per_token)
    assert p.kv_cache_tokens == 851_440
    assert p.max_concurrent_sequences == 5.2


def test_deepseek_r1_on_p5_matches_azure_h100() -> None:
    assert plan("deepseek-r1", "p5.48xlarge").memory == plan("deepseek-r1", "Standard_ND96isr_H100_v5").memory


# --- qwen3-235b-a22b: 4 KV heads under tp 8 are replicated --------------------------------------------


def test_qwen3_235b_on_8xh100_replicates_kv_heads() -> None:
    p = plan("qwen3-235b-a22b", "p5.48xlarge")
    assert (p.nodes, p.tensor_parallel_size, p.pipeline_parallel_size) == (1, 8, 1)
    weights = 235_093_634_560 * 2 // 8
    kv_per_token = 2 * 94 * max(1, 4 // 8) * 128 * 2  # 4 KV heads < tp 8: one full head on every rank
    assert kv_per_token == 48128  # 47 KiB, not the 23.5 KiB an even split would give
    assert_memory(p, usable=USABLE_80, weights=weights, runtime=overhead(4096), kv_per_token=kv_per_token)
    assert p.max_model_len == 40960
    assert any("replicated over tp 8" in line for line in p.arithmetic)


# --- tiny-test on one small GPU ----------------------------------------------------------------------


def test_tiny_model_on_one_a10() -> None:
    p = plan("tiny-test", "Standard_NV36ads_A10_v5", max_model_len=2048)
    assert (p.nodes, p.gpus_per_node, p.tensor_parallel_size, p.pipeline_parallel_size) == (1, 1, 1, 1)
    weights = 4_196_608 * 2  # tied embedding: one matrix, all params at 2 B, one GPU
    kv_per_token = 2 * 4 * 2 * 64 * 2  # 2 KiB
    usable = 24 * GiB * 9 // 10
    assert_memory(p, usable=usable, weights=weights, runtime=overhead(256), kv_per_token=kv_per_token)
    assert p.kv_cache_tokens == (usable - weights - overhead(256)) // 2048


def test_utilization_changes_the_usable_memory_exactly() -> None:
    p = plan("tiny-test", "g6.xlarge", gpu_memory_utilization=0.85)
    assert p.memory.usable == 24 * GiB * 85 // 100
    assert p.gpu_memory_utilization == 0.85


# --- gpt-oss-120b: mxfp4 experts, half of the layers in a 128-token sliding window ---------------------

USABLE_94_PCIE = 94 * GiB * 9 // 10


def test_gpt_oss_120b_fits_one_h100_nvl_with_mxfp4_experts_and_windowed_kv() -> None:
    p = plan("gpt-oss-120b", "Standard_NC40ads_H100_v5")
    assert (p.nodes, p.data_parallel_size, p.tensor_parallel_size, p.pipeline_parallel_size) == (1, 1, 1, 1)
    assert p.dtype == "mxfp4"
    # 128 experts x 36 layers, each gate/up (2880 -> 2 x 2880) and down (2880 -> 2880) with biases:
    experts = 36 * 128 * (3 * 2880 * 2880 + 2 * 2880 + 2880)
    edges = 2 * 201088 * 2880  # embedding and LM head, untied
    rest = 116_829_156_672 - edges - experts  # attention, sinks, routers, norms
    # mxfp4: 4-bit values plus an 8-bit scale per 32 values = 17/32 byte; everything else bf16
    weights = edges * 2 + rest * 2 + -(-experts * 17 // 32)
    assert p.memory.weights == weights
    assert round(weights / GiB, 1) == 60.7  # KAITO's earlier catalog: 60.77 GiB of safetensors
    per_layer = 2 * 8 * 64 * 2  # K and V x 8 KV heads x 64 x 2 B
    assert (p.memory.kv_bytes_per_token, p.memory.window_kv_bytes_per_token) == (
        18 * per_layer,
        18 * per_layer,
    )
    assert p.memory.sliding_window == 128
    kv_cache = USABLE_94_PCIE - weights - overhead(2880)
    assert p.memory.kv_cache == kv_cache
    # a full-context sequence: 131072 tokens in the 18 full layers, its last 128 in the 18 sliding ones
    sequence = 18 * per_layer * 131072 + 18 * per_layer * 128
    assert p.kv_cache_tokens == kv_cache * 131072 // sequence
    assert any("for the last 128 tokens of a sequence only" in line for line in p.arithmetic)


# --- gemma-3-27b-it: a vision encoder on the first stage, five sliding layers in six --------------------


def test_gemma_3_27b_carries_its_vision_encoder_and_windowed_kv() -> None:
    p = plan("gemma-3-27b-it", "Standard_NC80adis_H100_v5")  # 2 x H100 NVL
    assert (p.nodes, p.data_parallel_size, p.tensor_parallel_size, p.pipeline_parallel_size) == (1, 1, 2, 1)
    vision = 416_866_032 + 1152 * 5376 + 1152  # SigLIP encoder + its projection into the text width
    assert p.memory.weights == 27_432_406_640 * 2 // 2  # every parameter, the encoder included, at 2 B / tp 2
    per_layer = 2 * (16 // 2) * 128 * 2  # 16 KV heads over tp 2, head_dim 128
    assert (p.memory.kv_bytes_per_token, p.memory.window_kv_bytes_per_token) == (
        10 * per_layer,
        52 * per_layer,
    )
    assert p.memory.sliding_window == 1024
    staged = plan("gemma-3-27b-it", "Standard_NC40ads_H100_v5", nodes=2, max_model_len=8192)
    matrix = 262208 * 5376
    decoder = 27_432_406_640 - matrix - vision
    # the first stage holds the (tied) embedding, the encoder and 31 of 62 layers
    assert staged.memory.weights == (matrix + vision) * 2 + decoder * 31 // 62 * 2
    assert staged.memory.kv_bytes_per_token == 5 * 2 * 16 * 128 * 2  # 31 layers: 5 of them full attention
