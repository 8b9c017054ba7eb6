from __future__ import annotations

import json
from typing import Any

from phalanx.sim.responses import ChoiceResult, StreamEncoder, chat_response, completion_response, usage


def events(raw: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for event in raw:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        body = event[len(b"data: ") : -2]
        out.append("[DONE]" if body == b"[DONE]" else json.loads(body))
    return out


def encoder(*, chat: bool, include_usage: bool = True, continuous: bool = False) -> StreamEncoder:
    return StreamEncoder(
        chat=chat,
        request_id="id-1",
        created=1,
        model="m",
        include_usage=include_usage,
        continuous_usage=continuous,
    )


def test_chat_stream_sequence() -> None:
    enc = encoder(chat=True)
    raw = [*enc.start([0, 1], usage(3, 0, 0))]
    raw.append(enc.token(0, " a", None, None, usage(3, 1, 0)))
    raw.append(enc.token(1, " b", "length", None, usage(3, 2, 0)))
    raw.append(enc.token(0, "", "stop", "END", usage(3, 3, 0)))
    raw += enc.end(usage(3, 3, 2))
    ev = events(raw)
    assert [e["choices"][0]["delta"] for e in ev[:2]] == [{"role": "assistant", "content": ""}] * 2
    assert [e["choices"][0]["index"] for e in ev[:2]] == [0, 1]
    assert ev[2]["choices"][0]["delta"] == {"content": " a"}
    assert ev[2]["choices"][0]["finish_reason"] is None
    assert ev[3]["choices"][0]["finish_reason"] == "length"
    assert ev[4]["choices"][0]["stop_reason"] == "END"
    assert all(e["object"] == "chat.completion.chunk" for e in ev[:6])
    assert all("usage" not in e for e in ev[:5])
    assert ev[5]["choices"] == []
    assert ev[5]["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
    assert ev[6] == "[DONE]"


def test_completion_stream_has_no_role_chunk_and_no_usage_unless_asked() -> None:
    enc = encoder(chat=False, include_usage=False)
    assert enc.start([0], usage(1, 0, 0)) == []
    ev = events([enc.token(0, " x", "length", None, usage(1, 1, 0)), *enc.end(usage(1, 1, 0))])
    assert ev[0]["object"] == "text_completion"
    assert ev[0]["choices"][0]["text"] == " x"
    assert ev[1:] == ["[DONE]"]


def test_continuous_usage_adds_usage_to_every_chunk() -> None:
    enc = encoder(chat=False, continuous=True)
    ev = events([enc.token(0, " x", None, None, usage(1, 1, 0))])
    assert ev[0]["usage"]["completion_tokens"] == 1


def test_full_responses() -> None:
    body = usage(5, 2, 0)
    assert body == {
        "prompt_tokens": 5,
        "total_tokens": 7,
        "completion_tokens": 2,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    choices = [ChoiceResult(0, " a b", "length")]
    comp = completion_response("cmpl-1", 1, "m", choices, body)
    assert comp["object"] == "text_completion" and comp["choices"][0]["text"] == " a b"
    chat = chat_response("chatcmpl-1", 1, "m", choices, body)
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert chat["choices"][0]["message"]["content"] == " a b"
