"""The pure parts of the simulator's prefill/decode protocol."""

from __future__ import annotations

import json
import statistics

import pytest

from phalanx.sim.blocks import BlockManager
from phalanx.sim.config import parse_config
from phalanx.sim.leases import Lease, LeaseTable, lease_owner
from phalanx.sim.pdconfig import TransferLink, parse_kv_transfer_config, parse_sglang, transfer_seconds
from phalanx.sim.pdrequest import (
    Local,
    RemoteKv,
    SglangDecode,
    SglangPrefill,
    VllmPrefill,
    plan_request,
    remote_decode_params,
)
from phalanx.sim.protocol import GenerationRequest, Limits, RequestError, parse_request
from phalanx.sim.scheduler import LatencyModel, Scheduler, Sequence
from phalanx.sim.textgen import StopMatcher, TokenSource

LIMITS = Limits(served_model_names=("m",), max_model_len=4096, default_max_tokens=8)
NIXL = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_producer"})


# -- flags -------------------------------------------------------------------------------------


def test_kv_transfer_config_defaults_follow_vllm() -> None:
    kv = parse_kv_transfer_config(NIXL, {})
    assert (kv.connector, kv.role, kv.load_failure_policy) == ("NixlConnector", "kv_producer", "fail")
    assert (kv.lease_seconds, kv.side_channel_host, kv.side_channel_port) == (30.0, "localhost", 5600)
    env = {"VLLM_NIXL_SIDE_CHANNEL_HOST": "10.0.0.7", "VLLM_NIXL_SIDE_CHANNEL_PORT": "5601"}
    raw = json.dumps(
        {
            "kv_connector": "LMCacheConnectorV1",
            "kv_role": "kv_both",
            "kv_load_failure_policy": "recompute",
            "kv_connector_extra_config": {"kv_lease_duration": 2.5},
            "engine_id": "p0",
        }
    )
    kv = parse_kv_transfer_config(raw, env)
    assert (kv.lease_seconds, kv.load_failure_policy, kv.engine_id) == (2.5, "recompute", "p0")
    assert (kv.side_channel_host, kv.side_channel_port) == ("10.0.0.7", 5601)


def test_kv_transfer_config_reports_every_problem_at_once() -> None:
    raw = json.dumps(
        {
            "kv_connector": "Nixl",
            "kv_role": "producer",
            "kv_load_failure_policy": "retry",
            "kv_connector_extra_config": {"kv_lease_duration": -1},
            "kv_colour": 1,
        }
    )
    with pytest.raises(ValueError) as info:
        parse_kv_transfer_config(raw, {"VLLM_NIXL_SIDE_CHANNEL_PORT": "99999"})
    message = str(info.value)
    for part in (
        "unknown key(s) kv_colour",
        "kv_connector is 'Nixl'; use one of NixlConnector, LMCacheConnectorV1, P2pNcclConnector",
        "kv_role is 'producer'",
        "kv_load_failure_policy is 'retry'; use one of fail, recompute",
        "kv_lease_duration is -1",
        "VLLM_NIXL_SIDE_CHANNEL_PORT=99999 is not a TCP port",
    ):
        assert part in message
    for bad in ("{", "[1]"):
        with pytest.raises(ValueError, match="JSON"):
            parse_kv_transfer_config(bad, {})


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--kv-transfer-config", "{"], "--kv-transfer-config is not JSON"),
        (["--kv-transfer-config", '{"kv_connector":"X","kv_role":"kv_both"}'], "kv_connector is 'X'"),
        (["--disaggregation-mode", "both"], "invalid choice: 'both'"),
        (["--disaggregation-transfer-backend", "tcp"], "invalid choice: 'tcp'"),
        (["--disaggregation-mode", "prefill", "--kv-transfer-config", NIXL], "exclude each other"),
        (["--kv-transfer-bandwidth", "-1"], "must be a finite number >= 0"),
    ],
)
def test_bad_pd_flags_exit_2_with_the_reason(
    flags: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_config(["--served-model-name", "m", *flags], {})
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


def test_sglang_flags_and_timeouts() -> None:
    assert parse_sglang("null", "mooncake", 8998, {}) is None
    sg = parse_sglang("prefill", "nixl", 9000, {"SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT": "5"})
    assert sg is not None
    assert (sg.mode, sg.backend, sg.bootstrap_port, sg.bootstrap_timeout, sg.waiting_timeout) == (
        "prefill",
        "nixl",
        9000,
        5.0,
        300.0,
    )
    with pytest.raises(ValueError, match="SGLANG_DISAGGREGATION_WAITING_TIMEOUT"):
        parse_sglang("decode", "mooncake", 8998, {"SGLANG_DISAGGREGATION_WAITING_TIMEOUT": "soon"})
    cfg = parse_config(["--served-model-name", "m", "--disaggregation-mode", "decode"], {})
    assert cfg.sglang is not None and cfg.sglang.bootstrap_port == 8998 and cfg.kv_transfer is None


def test_transfer_time_and_the_link_queue() -> None:
    assert transfer_seconds(10**9, 25.0) == pytest.approx(0.04)
    assert transfer_seconds(10**9, 0.0) == 0.0
    link = TransferLink(1.0)
    assert link.book(0.0, 10**9) == pytest.approx(1.0)
    assert link.book(0.5, 10**9) == pytest.approx(2.0)  # waits for the first transfer
    assert link.book(5.0, 10**9) == pytest.approx(6.0)  # an idle link starts at once


# -- what a request asks ----------------------------------------------------------------------


def request(**fields: object) -> GenerationRequest:
    return parse_request({"prompt": "a b c", **fields}, chat=False, limits=LIMITS)


def test_plans_for_vllm_requests() -> None:
    kv = parse_kv_transfer_config(NIXL, {})
    remote = {
        "do_remote_prefill": True,
        "remote_block_ids": [[1, 2]],
        "remote_engine_id": "e",
        "remote_request_id": "cmpl-1",
        "remote_host": "10.0.0.1",
        "remote_port": 5600,
    }
    assert plan_request(request(), kv, None) == Local()
    assert plan_request(request(kv_transfer_params={"do_remote_decode": True}), kv, None) == VllmPrefill()
    assert plan_request(request(kv_transfer_params=remote), kv, None) == RemoteKv(
        "10.0.0.1", 5600, "cmpl-1", "e"
    )
    # Without a connector vLLM ignores the field.
    assert plan_request(request(kv_transfer_params=remote), None, None) == Local()
    # Incomplete remote fields: computed here with a warning, as vLLM does.
    partial = {k: v for k, v in remote.items() if k != "remote_host"}
    plan = plan_request(request(kv_transfer_params=partial), kv, None)
    assert isinstance(plan, Local) and plan.warning is not None and "remote_host" in plan.warning
    streamed = plan_request(request(stream=True, kv_transfer_params={"do_remote_decode": True}), kv, None)
    assert isinstance(streamed, Local) and streamed.warning


def test_plans_for_sglang_requests() -> None:
    boot = {"bootstrap_host": "10.0.0.1", "bootstrap_port": 8998, "bootstrap_room": 42}
    prefill = parse_sglang("prefill", "mooncake", 8998, {})
    decode = parse_sglang("decode", "mooncake", 8998, {})
    assert plan_request(request(**boot), None, prefill) == SglangPrefill(42)
    plan = plan_request(request(**boot), None, decode)
    assert isinstance(plan, SglangDecode) and plan.bootstrap.host == "10.0.0.1"
    with pytest.raises(RequestError) as info:
        plan_request(request(), None, decode)
    assert info.value.status == 400 and info.value.param == "bootstrap_room"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"kv_transfer_params": [1]}, "kv_transfer_params"),
        ({"bootstrap_host": "h", "bootstrap_port": 0, "bootstrap_room": 1}, "bootstrap_port"),
        ({"bootstrap_host": "h", "bootstrap_port": 1, "bootstrap_room": -1}, "bootstrap_room"),
        ({"bootstrap_room": 1}, "bootstrap_host"),
        ({"kv_transfer_params": {"do_remote_decode": True}, "n": 2}, "n"),
    ],
)
def test_bad_pd_fields_are_400(fields: dict[str, object], param: str) -> None:
    with pytest.raises(RequestError) as info:
        request(**fields)
    assert info.value.status == 400 and info.value.param == param


def test_remote_decode_params_have_vllms_fields() -> None:
    params = remote_decode_params(
        engine_id="e", request_id="cmpl-1", block_ids=[3, 4], host="h", port=5600, tp_size=2
    )
    assert params == {
        "do_remote_prefill": True,
        "do_remote_decode": False,
        "remote_block_ids": [[3, 4]],
        "remote_engine_id": "e",
        "remote_request_id": "cmpl-1",
        "remote_host": "h",
        "remote_port": 5600,
        "tp_size": 2,
    }


# -- leases ------------------------------------------------------------------------------------


def test_lease_table_expiry_and_why_missing() -> None:
    table = LeaseTable()
    table.add(Lease("a", lease_owner("a"), [1, 2], 20, expires=10.0))
    assert table.num_blocks == 2 and table.owners == {"lease:a"}
    assert table.expire("a", now=9.0) is None  # not yet
    assert table.expire("a", now=10.0) is not None
    assert len(table) == 0 and table.why_missing("a") == "expired" and table.why_missing("b") == "unknown"
    table.add(Lease("c", "x", [], 0, 1.0))
    with pytest.raises(ValueError, match="already exists"):
        table.add(Lease("c", "x", [], 0, 1.0))


# -- scheduler ---------------------------------------------------------------------------------


def make_seq(seq_id: str, prompt_len: int, max_tokens: int, **extra: object) -> Sequence:
    return Sequence(
        seq_id=seq_id,
        request_id=seq_id,
        choice=0,
        prompt=[(7 * i + len(seq_id)) % 32000 for i in range(prompt_len)],
        max_tokens=max_tokens,
        source=TokenSource(prompt_len),
        stop=StopMatcher(()),
        arrival=0.0,
        **extra,  # type: ignore[arg-type]
    )


def scheduler(num_blocks: int = 8192, budget: int = 8192) -> Scheduler:
    return Scheduler(
        BlockManager(num_blocks, 16),
        LatencyModel(),
        max_num_seqs=256,
        max_num_batched_tokens=budget,
        max_model_len=32768,
    )


def drain(s: Scheduler, now: float = 0.0) -> float:
    while s.has_work:
        plan = s.schedule(now)
        now += plan.duration
        s.complete_step(plan, now)
    return now


def test_a_prefill_for_remote_decode_keeps_its_blocks_on_the_length_cap_only() -> None:
    s = scheduler()
    s.add(make_seq("p", 100, 1, hold_kv="length"))
    plan = s.schedule(0.0)
    result = s.complete_step(plan, plan.duration)
    (done,) = result.finished
    assert done.leased is not None and done.leased[0] == "lease:p" and len(done.leased[1]) == 7
    assert s.blocks.owners == {"lease:p"}
    s.blocks.free("lease:p")
    assert s.blocks.num_free_blocks == s.blocks.num_blocks
    # An aborted one keeps nothing.
    s.add(make_seq("q", 100, 5, hold_kv="length"))
    s.schedule(0.0)
    s.abort("q")
    assert s.blocks.owners == set()


def test_a_remotely_prefilled_prompt_starts_with_a_decode_step() -> None:
    s = scheduler()
    s.add(make_seq("d", 4000, 3, remote_kv=True))
    plan = s.schedule(0.0)
    assert (plan.prefill_tokens, plan.num_decodes) == (0, 1)
    assert plan.duration == pytest.approx(LatencyModel().inter_token_latency)
    local = scheduler()
    local.add(make_seq("d", 4000, 3))
    assert local.schedule(0.0).prefill_tokens == 4000


# -- interference ------------------------------------------------------------------------------


def decode_gaps(*, long_prompt_remote: bool) -> list[float]:
    """Inter-token gaps of 8 decoding sequences while a 16k-token prompt arrives (default
    latency model and step budget)."""
    s = scheduler()
    for i in range(8):
        s.add(make_seq(f"r{i}", 256, 120))
    now = 0.0
    gaps: list[float] = []
    for step in range(120):
        if step == 20:
            s.add(make_seq("long", 16384, 1, remote_kv=long_prompt_remote))
        plan = s.schedule(now)
        now += plan.duration
        result = s.complete_step(plan, now)
        gaps += [out.interval for out in result.outputs if not out.first and out.seq_id.startswith("r")]
    return gaps


def p99(values: list[float]) -> float:
    return sorted(values)[int(0.99 * (len(values) - 1))]


def test_a_long_prompt_stalls_running_decodes_on_an_aggregated_engine_only() -> None:
    mixed = decode_gaps(long_prompt_remote=False)
    decode_only = decode_gaps(long_prompt_remote=True)
    median = statistics.median(mixed)
    assert median == pytest.approx(statistics.median(decode_only))
    # Aggregated: the 16k prompt is prefilled in two chunks of the 8192-token budget, and each
    # chunk's step carries the running decodes: their inter-token latency jumps by two orders.
    assert p99(mixed) > 50 * median
    # Decode-only pod: the prompt's KV arrived by transfer; the batch barely notices it.
    assert p99(decode_only) < 1.1 * median
