"""The official openai client against one `phalanx sim` process."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator

import openai
import pytest

from .conftest import FAST, HOST, SimProcess, get, wait_health

pytestmark = pytest.mark.component


@pytest.fixture
def sim(start_sim: Callable[..., SimProcess]) -> Iterator[SimProcess]:
    process = start_sim(*FAST)
    wait_health(process.port, 200)
    yield process


@pytest.fixture
def client(sim: SimProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{sim.base_url}/v1", api_key="x", max_retries=0, timeout=10) as c:
        yield c


def post(
    port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_models_and_version(client: openai.OpenAI, sim: SimProcess) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny"]
    card = models[0].model_dump()
    assert card["owned_by"] == "vllm" and card["max_model_len"] == 512 and card["parent"] is None
    assert json.loads(get(sim.port, "/version")[1]) == {"version": "0.33.0"}
    assert json.loads(get(sim.port, "/load")[1]) == {"server_load": 0}


def test_completion_is_deterministic_and_reports_cached_tokens(client: openai.OpenAI) -> None:
    prompt = "The history of the simulator begins with a long and winding introduction " * 3
    first = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, seed=3)
    assert first.id.startswith("cmpl-") and first.object == "text_completion"
    assert first.choices[0].finish_reason == "length"
    assert first.usage is not None and first.usage.completion_tokens == 6
    second = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, seed=3)
    assert second.choices[0].text == first.choices[0].text
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert (second.usage.prompt_tokens_details.cached_tokens or 0) > 0
    other = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, seed=4)
    assert other.choices[0].text != first.choices[0].text


def test_chat_with_n_and_stop(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=5, n=2
    )
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"
    assert [c.index for c in reply.choices] == [0, 1]
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and reply.usage.completion_tokens == 10
    words = (reply.choices[0].message.content or "").split()
    stopped = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=5, stop=[words[2]]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert words[2] not in (stopped.choices[0].message.content or "").split()


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "tell me"}],
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks[1:-1]] == [None, None, None, "length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert len(text.split()) >= 3


def test_completion_stream(client: openai.OpenAI) -> None:
    chunks = list(client.completions.create(model="tiny", prompt="go", max_tokens=3, stream=True))
    assert len(chunks) == 3
    assert all(c.object == "text_completion" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_errors_through_the_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="other", prompt="x", max_tokens=2)
    assert "The model `other` does not exist." in str(missing.value)
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model="tiny", prompt="x", max_tokens=600)
    assert "maximum context length is 512 tokens" in str(too_long.value)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[], max_tokens=2)


def test_raw_errors_and_request_id(sim: SimProcess) -> None:
    status, headers, body = post(sim.port, "/v1/completions", b"{nope", {"X-Request-Id": "abc-1"})
    assert status == 400 and headers.get("X-Request-Id") == "abc-1"
    assert json.loads(body)["error"]["type"] == "BadRequestError"
    status, _, body = post(sim.port, "/v1/completions", b'{"prompt": "x", "max_tokens": -1}')
    assert status == 400 and json.loads(body)["error"]["param"] == "max_tokens"
    status, body = get(sim.port, "/v1/completions")
    assert status == 405 and json.loads(body)["error"]["code"] == 405
    status, body = get(sim.port, "/no/such/path")
    assert status == 404 and "error" in json.loads(body)
    status, headers, _ = post(
        sim.port, "/v1/completions", b'{"prompt": "x", "max_tokens": 1}', {"X-Request-Id": "r"}
    )
    assert status == 200 and headers.get("X-Request-Id") == "r"


def test_metrics(client: openai.OpenAI, sim: SimProcess) -> None:
    client.completions.create(model="tiny", prompt="count me", max_tokens=3)
    status, body = get(sim.port, "/metrics")
    assert status == 200
    text = body.decode()
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:cache_config_info",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        'vllm:request_success_total{engine="0",finished_reason="length",model_name="tiny"} 1.0',
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:num_preemptions_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:request_queue_time_seconds_bucket",
        "vllm:request_inference_time_seconds_bucket",
        "vllm:request_prompt_tokens_bucket",
        "vllm:request_generation_tokens_bucket",
    ):
        assert name in text, name
    assert 'vllm:generation_tokens_total{engine="0",model_name="tiny"} 3.0' in text
