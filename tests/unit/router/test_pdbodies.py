"""The bodies the two prefill/decode flows send, against what vLLM's and SGLang's routers send."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from phalanx.router.endpoints import Endpoint
from phalanx.router.pdbodies import (
    ClientBody,
    bootstrap_host,
    decode_json,
    encode_json,
    new_bootstrap_room,
    sglang_bodies,
    vllm_decode_body,
    vllm_kv_params,
    vllm_prefill_body,
)

CHAT = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_completion_tokens": 300,
    "min_tokens": 20,
    "temperature": 0.3,
}
COMPLETION = {"model": "m", "prompt": "hi", "max_tokens": 50, "stream": False}
RETURNED = {
    "do_remote_prefill": True,
    "do_remote_decode": False,
    "remote_engine_id": "engine-7",
    "remote_block_ids": [4, 5, 6],
    "remote_host": "10.1.2.3",
    "remote_port": 5600,
    "remote_request_id": "req-1",
    "tp_size": 2,
    "something_new": {"kept": "verbatim"},
}


def prefill_ep(url: str = "http://10.1.2.3:30000", port: int | None = 9000) -> Endpoint:
    return Endpoint(
        name="p",
        url=url,
        serving="s",
        group_index=0,
        pd_role="prefill",
        pd_protocol="sglang",
        bootstrap_port=port,
    )


def both(payload: dict[str, Any]) -> list[ClientBody]:
    """The same body parsed (small) and as bytes only (large), with whitespace a client may add."""
    raw = json.dumps(payload, indent=1).encode() + b"\n"
    return [ClientBody(raw, json.loads(raw)), ClientBody(raw)]


def read(body: bytes) -> dict[str, Any]:
    """As vLLM and SGLang read it: Python's JSON parser, the last of duplicate names wins."""
    payload: dict[str, Any] = json.loads(body)
    return payload


# What the engines read for a removed field in a body edited without parsing it.
ABSENT = {"stream_options": None, "min_tokens": 0}


@pytest.mark.parametrize("body", both(CHAT), ids=["parsed", "bytes"])
def test_vllm_prefill_is_one_unstreamed_token_asking_for_remote_decode(body: ClientBody) -> None:
    sent = read(vllm_prefill_body(body, chat=True))
    assert sent["stream"] is False
    assert sent["max_tokens"] == 1 and sent["max_completion_tokens"] == 1
    for name, absent in ABSENT.items():
        assert sent.get(name, absent) == absent
    assert sent["kv_transfer_params"] == {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "remote_engine_id": None,
        "remote_block_ids": None,
        "remote_host": None,
        "remote_port": None,
    }
    assert (sent["messages"], sent["temperature"]) == (CHAT["messages"], 0.3)
    assert CHAT["stream"] is True and "kv_transfer_params" not in CHAT  # the client's body is untouched


def test_a_parsed_body_loses_the_dropped_fields_and_keeps_one_of_each_name() -> None:
    sent = vllm_prefill_body(ClientBody(b"", CHAT), chat=True)
    assert "stream_options" not in read(sent) and "min_tokens" not in read(sent)
    assert sent.count(b'"stream"') == 1


@pytest.mark.parametrize("body", both(COMPLETION), ids=["parsed", "bytes"])
def test_a_completion_prefill_gets_max_tokens_only(body: ClientBody) -> None:
    sent = read(vllm_prefill_body(body, chat=False))
    assert (sent["max_tokens"], "max_completion_tokens" in sent, sent["prompt"]) == (1, False, "hi")


@pytest.mark.parametrize("body", both(CHAT), ids=["parsed", "bytes"])
def test_vllm_decode_keeps_the_clients_fields_and_prefills_params_verbatim(body: ClientBody) -> None:
    sent = read(vllm_decode_body(body, RETURNED))
    assert sent["kv_transfer_params"] == RETURNED
    assert {k: v for k, v in sent.items() if k != "kv_transfer_params"} == CHAT


def test_a_client_kv_transfer_params_is_replaced_in_a_large_body() -> None:
    raw = encode_json({"model": "m", "prompt": "p", "kv_transfer_params": {"do_remote_prefill": True}})
    assert read(vllm_decode_body(ClientBody(raw), RETURNED))["kv_transfer_params"] == RETURNED


def test_an_edited_body_must_be_a_json_object() -> None:
    assert read(ClientBody(b" {} ").edited({"a": 1})) == {"a": 1}
    with pytest.raises(ValueError, match="not a JSON object"):
        ClientBody(b"[1]").edited({"a": 1})


@pytest.mark.parametrize(
    ("answer", "params"),
    [
        ({"choices": [], "kv_transfer_params": RETURNED}, RETURNED),
        ({"choices": []}, None),  # stopped on a stop token, not the length cap: vLLM sends none
        ({"kv_transfer_params": None}, None),
        ({"kv_transfer_params": {}}, None),
        ({"kv_transfer_params": [1]}, None),
        ([1, 2], None),
        (None, None),
    ],
)
def test_prefills_kv_params_are_read_only_when_present(answer: object, params: object) -> None:
    assert vllm_kv_params(answer) == params


@pytest.mark.parametrize("body", both(CHAT), ids=["parsed", "bytes"])
def test_sglang_bodies_share_one_bootstrap_and_only_prefill_is_cut_short(body: ClientBody) -> None:
    prefill_raw, decode_raw = sglang_bodies(body, prefill_ep(), 12345, chat=True)
    prefill, decode = read(prefill_raw), read(decode_raw)
    bootstrap = {"bootstrap_host": "10.1.2.3", "bootstrap_port": 9000, "bootstrap_room": 12345}
    assert {k: decode[k] for k in bootstrap} == bootstrap == {k: prefill[k] for k in bootstrap}
    assert {k: v for k, v in decode.items() if k not in bootstrap} == CHAT
    assert prefill["stream"] is False and prefill["max_tokens"] == 1
    assert "kv_transfer_params" not in prefill


def test_sglangs_default_bootstrap_port_and_ipv6_hosts() -> None:
    _, decode = sglang_bodies(
        ClientBody(encode_json(COMPLETION)), prefill_ep("http://[fd00::7]:8000", None), 1, False
    )
    assert (read(decode)["bootstrap_host"], read(decode)["bootstrap_port"]) == ("fd00::7", 8998)
    assert bootstrap_host(prefill_ep("http://pod-a.ns:8000")) == "pod-a.ns"


def test_bootstrap_rooms_are_63_bit_and_differ() -> None:
    rng = random.Random(7)
    rooms = {new_bootstrap_room(rng) for _ in range(1000)}
    assert len(rooms) == 1000
    assert all(0 <= room < 2**63 for room in rooms)
    assert max(rooms) > 2**62  # the whole range is used, not 32 bits


def test_json_round_trip_and_bodies_that_are_not_objects() -> None:
    assert decode_json(encode_json(CHAT)) == CHAT
    assert json.loads(encode_json({"a": 1})) == {"a": 1}
    for raw in (b"[1]", b"nope", b'"x"', b"[" * 100_000):
        assert decode_json(raw) is None
