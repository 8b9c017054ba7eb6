"""Properties over random catalog model x instance x context x dtype x node limits x pinned layouts.

Whatever the request, make_plan either refuses with a PlanningError or returns a plan whose memory adds
up, whose parallel sizes use every GPU, which no smaller node count could have served, and whose layout is
the best of those it weighed. Every fix a PlanningError offers is applied and must produce a plan.
"""

from __future__ import annotations

import dataclasses
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.planner import (
    INSTANCE_TYPES,
    MODELS,
    Dtype,
    ModelArchitecture,
    Plan,
    PlanningError,
    PlanRequest,
    make_plan,
    shape_for_instance,
)
from phalanx.planner.layout import TIE_TOLERANCE
from phalanx.planner.memory import (
    kv_bytes_per_token,
    kv_cache_tokens,
    sequence_kv_bytes,
    usable_bytes,
    weight_bytes_per_gpu,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def requests(draw: st.DrawFn) -> PlanRequest:
    model = draw(st.sampled_from(MODELS))
    instance = draw(st.sampled_from(INSTANCE_TYPES))
    divisors = [d for d in (1, 2, 4, 8) if instance.gpu_count % d == 0]
    return PlanRequest(
        model=model,
        shape=shape_for_instance(instance.name),
        max_model_len=draw(st.none() | st.integers(1, model.max_context)),
        dtype=draw(st.sampled_from([None, "bf16", "fp16", "fp8"])),
        gpu_memory_utilization=draw(st.sampled_from([0.5, 0.8, 0.84, 0.9, 0.95, 1.0])),
        max_nodes=draw(st.none() | st.integers(1, 8)),
        nodes=draw(st.none() | st.integers(1, 6)),
        tensor_parallel_size=draw(st.none() | st.none() | st.sampled_from(divisors)),
        data_parallel_size=draw(st.none() | st.none() | st.sampled_from(divisors)),
    )


def check_plan(req: PlanRequest, plan: Plan) -> None:
    model, memory = req.model, plan.memory
    assert memory.weights + memory.runtime_overhead + memory.kv_cache == memory.usable
    assert memory.usable == usable_bytes(req.shape.gpu_memory_bytes, req.gpu_memory_utilization)
    assert memory.usable <= memory.gpu_total
    assert memory.kv_cache >= sequence_kv_bytes(memory, plan.max_model_len)
    assert plan.kv_cache_tokens == kv_cache_tokens(memory, plan.max_model_len) >= plan.max_model_len
    assert plan.max_concurrent_sequences >= 1
    dp, tp, pp = plan.data_parallel_size, plan.tensor_parallel_size, plan.pipeline_parallel_size
    assert dp * tp * pp == plan.nodes * plan.gpus_per_node
    assert plan.gpus_per_node % (dp * tp) == 0
    assert dp == 1 or (plan.nodes == 1 and pp == 1)  # replicas share one node, never a pipeline
    assert model.num_attention_heads % tp == 0
    assert plan.pipeline_parallel_size <= model.num_layers
    assert plan.max_model_len == (req.max_model_len or model.max_context)
    assert plan.dtype == (req.dtype or model.native_dtype)
    if req.tensor_parallel_size is not None:
        assert tp == req.tensor_parallel_size
    if req.data_parallel_size is not None:
        assert dp == req.data_parallel_size
    check_choice(plan)
    if req.nodes is not None:
        assert plan.nodes == req.nodes
    else:
        assert plan.nodes <= (req.max_nodes or 64)
        if plan.nodes > 1:  # the fewest: one node less does not fit
            fewer = dataclasses.replace(req, nodes=plan.nodes - 1, max_nodes=None)
            try:
                make_plan(fewer)
            except PlanningError:
                pass
            else:
                raise AssertionError(f"{plan.nodes - 1} nodes would have fitted")


def check_choice(plan: Plan) -> None:
    """The chosen layout is the first weighed, and no layout weighed was faster beyond the tie tolerance
    (a tie going to the larger tensor parallel group)."""
    assert plan.throughput is not None
    first = plan.layouts[0]
    assert (first.data_parallel_size, first.tensor_parallel_size, first.pipeline_parallel_size) == (
        plan.data_parallel_size,
        plan.tensor_parallel_size,
        plan.pipeline_parallel_size,
    )
    chosen = plan.throughput.tokens_per_second_per_node
    stages_in_node = plan.nodes == 1 and plan.data_parallel_size == 1 and plan.pipeline_parallel_size > 1
    for other in plan.layouts[1:]:
        if other.throughput is None:
            assert other.ruled_out
            continue
        if stages_in_node:  # stages only to fit: the widest tensor parallel group that fits
            assert other.tensor_parallel_size < plan.tensor_parallel_size
            continue
        faster = other.throughput.tokens_per_second_per_node
        assert faster <= chosen or (
            faster * (1 - TIE_TOLERANCE) <= chosen and other.tensor_parallel_size < plan.tensor_parallel_size
        )


def apply_fix(req: PlanRequest, fix: str) -> PlanRequest:
    """The request a fix describes."""
    if match := re.match(r"pin at most (\d+) node", fix):
        return dataclasses.replace(req, nodes=int(match[1]), max_nodes=None)
    if match := re.match(r"raise max_nodes to (\d+)", fix):
        return dataclasses.replace(req, max_nodes=int(match[1]))
    if match := re.match(r"pin (\d+) node", fix):
        return dataclasses.replace(req, nodes=int(match[1]), max_nodes=None)
    if match := re.match(r"allow up to (\d+) node", fix):
        return dataclasses.replace(req, max_nodes=int(match[1]))
    if match := re.match(r"use (\S+) \(", fix):
        return dataclasses.replace(req, shape=shape_for_instance(match[1]))
    if match := re.match(r"lower max_model_len to (\d+) ", fix):
        return dataclasses.replace(req, max_model_len=int(match[1]))
    if fix.startswith("leave dtype unset"):
        return dataclasses.replace(req, dtype=None)
    if match := re.match(r"set dtype to (?:one of )?(\w+)", fix):
        return dataclasses.replace(req, dtype=match[1])
    if "(leave dtype unset)" in fix.partition(":")[0]:
        return dataclasses.replace(req, dtype=None)
    if "fp8" in fix.partition(":")[0]:
        return dataclasses.replace(req, dtype="fp8")
    if match := re.match(r"(?:set|use) (tensor|data)_parallel_size(?: to)?(?: one of)? (\d+)", fix):
        return dataclasses.replace(req, **{f"{match[1]}_parallel_size": int(match[2])})
    if fix.startswith(("use one of", "for more copies")):
        return dataclasses.replace(req, tensor_parallel_size=None, data_parallel_size=None)
    raise AssertionError(f"a fix this test cannot apply: {fix!r}")


@SETTINGS
@given(requests())
def test_a_plan_adds_up_or_the_planner_says_why_not(req: PlanRequest) -> None:
    try:
        plan = make_plan(req)
    except PlanningError as error:
        if error.needed_bytes is not None:
            assert error.available_bytes is not None
            assert error.needed_bytes > error.available_bytes
        for fix in error.fixes:
            fixed = apply_fix(req, fix)
            if error.needed_bytes is None:
                # A fix for a request that breaks a rule: that complaint must go, others may remain.
                try:
                    check_plan(fixed, make_plan(fixed))
                except PlanningError as after:
                    assert after.message != error.message
            else:  # a fix for a model that does not fit: it must produce a plan
                check_plan(fixed, make_plan(fixed))
        return
    check_plan(req, plan)


DTYPES: tuple[Dtype, ...] = ("bf16", "fp16", "fp8")


@SETTINGS
@given(st.sampled_from(MODELS), st.sampled_from(DTYPES), st.sampled_from([1, 2, 4, 8]))
def test_more_pipeline_stages_never_need_more_memory_per_gpu(
    model: ModelArchitecture, dtype: Dtype, tp: int
) -> None:
    """Why the fewest-nodes search may stop at the first count that fits."""
    previous = None
    for pp in range(1, model.num_layers + 1):
        current = (weight_bytes_per_gpu(model, dtype, tp, pp), kv_bytes_per_token(model, tp, pp))
        if previous is not None:
            assert current[0] <= previous[0]
            assert current[1] <= previous[1]
        previous = current
