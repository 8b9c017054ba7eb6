from __future__ import annotations

import pytest
from multidict import CIMultiDict

from phalanx.router.endpoints import Endpoint, check_unique
from phalanx.router.messages import (
    ParsedRequest,
    RequestError,
    client_response_headers,
    model_cards,
    models_from_listing,
    no_endpoint,
    parse_request,
    request_id,
    unknown_model,
    upstream_request_headers,
)
from phalanx.router.proxy import SseFramer


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"\xff\xfe", 400, None),
        (b"", 400, None),
        (b"[1, 2]", 400, None),
        (b'"model"', 400, None),
        (b"{}", 400, "model"),
        (b'{"model": null}', 400, "model"),
        (b'{"model": ""}', 400, "model"),
        (b'{"model": 42}', 400, "model"),
        # Python's own limits on what it will parse: still the client's error, not the router's.
        (b'{"model": "m", "max_tokens": ' + b"1" * 5000 + b"}", 400, None),
        (b'{"model": "m", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, None),
    ],
)
def test_bad_requests(body: bytes, status: int, param: str | None) -> None:
    err = parse_request(body)
    assert isinstance(err, RequestError)
    assert (err.status, err.param) == (status, param)


def test_good_requests() -> None:
    assert parse_request(b'{"model": "m", "prompt": "x"}') == ParsedRequest("m", stream=False)
    assert parse_request(b'{"model": "m", "stream": true}') == ParsedRequest("m", stream=True)
    # Only a real boolean true streams; the engine rejects the rest.
    assert parse_request(b'{"model": "m", "stream": "yes"}') == ParsedRequest("m", stream=False)


def test_unknown_model_uses_vllm_wording() -> None:
    err = unknown_model("x")
    assert (err.status, err.message) == (404, "The model `x` does not exist.")


def test_no_endpoint_is_retryable() -> None:
    err = no_endpoint("m", 3)
    assert err.status == 503
    assert err.headers == {"Retry-After": "3"}


def test_upstream_headers_drop_hop_by_hop_and_add_request_id() -> None:
    given = [
        ("Host", "router:8080"),
        ("Connection", "keep-alive, X-Private"),
        ("X-Private", "secret"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "12"),
        ("Authorization", "Bearer k"),
        ("Content-Type", "application/json"),
        ("X-Custom", "1"),
        ("X-Custom", "2"),
    ]
    out = upstream_request_headers(given, "rid")
    assert out == [
        ("Authorization", "Bearer k"),
        ("Content-Type", "application/json"),
        ("X-Custom", "1"),
        ("X-Custom", "2"),
        ("X-Request-Id", "rid"),
        ("Accept-Encoding", "identity"),
    ]


def test_upstream_headers_drop_what_no_longer_holds_for_a_body_already_read() -> None:
    # aiohttp has decoded a compressed body, and has answered the client's 100-continue itself.
    given = [("Content-Encoding", "gzip"), ("Expect", "100-continue"), ("Content-Type", "application/json")]
    out = upstream_request_headers(given, "rid")
    assert [name for name, _ in out] == ["Content-Type", "X-Request-Id", "Accept-Encoding"]


def test_upstream_headers_keep_the_clients_encoding_and_request_id() -> None:
    out = upstream_request_headers([("accept-encoding", "gzip"), ("x-request-id", "r1")], "r1")
    assert out == [("accept-encoding", "gzip"), ("X-Request-Id", "r1")]


def test_headers_named_in_connection_count_as_absent() -> None:
    # A client's Accept-Encoding that is hop-by-hop does not reach the endpoint: identity does.
    out = upstream_request_headers([("Connection", "Accept-Encoding"), ("Accept-Encoding", "gzip")], "r")
    assert out == [("X-Request-Id", "r"), ("Accept-Encoding", "identity")]
    # An engine's request id that is hop-by-hop is replaced by the router's.
    back = client_response_headers([("Connection", "x-request-id"), ("X-Request-Id", "up")], "rid")
    assert back == [("X-Request-Id", "rid")]


def test_request_id_is_the_first_one_given_unless_empty() -> None:
    assert request_id(CIMultiDict([("x-request-id", "a"), ("X-Request-Id", "b")])) == "a"
    assert len(request_id(CIMultiDict([("X-Request-Id", "")]))) == 32


def test_request_id_is_kept_or_made() -> None:
    assert request_id(CIMultiDict([("X-REQUEST-ID", "abc")])) == "abc"
    made = request_id(CIMultiDict([]))
    assert len(made) == 32
    assert made != request_id(CIMultiDict([]))


def test_client_headers() -> None:
    out = client_response_headers(
        [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked"), ("Connection", "close")],
        "rid",
    )
    assert out == [("Content-Type", "text/event-stream"), ("X-Request-Id", "rid")]
    kept = client_response_headers([("Content-Length", "5"), ("X-Request-Id", "up")], "rid")
    assert kept == [("X-Request-Id", "up"), ("Content-Length", "5")]
    # An event stream goes out chunked even when the engine declared a length, so a stream the
    # router has to end early (error event, [DONE]) does not leave the client waiting for bytes.
    stream = client_response_headers([("Content-Type", "text/event-stream"), ("Content-Length", "900")], "r")
    assert stream == [("Content-Type", "text/event-stream"), ("X-Request-Id", "r")]


def test_model_cards_shape() -> None:
    cards = model_cards(["a"], 123)
    assert cards["object"] == "list"
    assert cards["data"] == [
        {
            "id": "a",
            "object": "model",
            "created": 123,
            "owned_by": "phalanx",
            "root": "a",
            "parent": None,
            "max_model_len": None,
            "permission": [],
        }
    ]


@pytest.mark.parametrize(
    ("payload", "models"),
    [
        ({"data": [{"id": "a"}, {"id": "b"}]}, ("a", "b")),
        ({"data": [{"id": "a"}, {"id": 3}, "x", {"id": ""}]}, ("a",)),
        ({"data": "nope"}, ()),
        ([], ()),
        (None, ()),
    ],
)
def test_models_from_listing(payload: object, models: tuple[str, ...]) -> None:
    assert models_from_listing(payload) == models


def test_sse_framer_holds_back_only_partial_events() -> None:
    f = SseFramer()
    assert f.feed(b"data: 1\n\ndata: 2") == b"data: 1\n\n"
    assert f.pending == len(b"data: 2")
    assert f.feed(b"\n") == b""
    assert f.feed(b"\ndata: 3\n\n") == b"data: 2\n\ndata: 3\n\n"
    assert f.feed(b"data: 4\r\n\r\n") == b"data: 4\r\n\r\n"
    assert f.feed(b": keep-alive") == b""
    assert f.flush() == b": keep-alive"
    assert f.flush() == b""


def test_sse_framer_holds_back_a_bounded_amount() -> None:
    f = SseFramer(max_pending=8)
    assert f.feed(b"data: 12") == b""  # 8 bytes: still held
    assert f.feed(b"3") == b"data: 123"  # past the bound: passed on unframed
    assert f.pending == 0
    assert f.feed(b"\n\ndata: 4\n\n") == b"\n\ndata: 4\n\n"


def test_sse_framer_is_byte_exact() -> None:
    stream = b"".join(f'data: {{"i": {i}}}\n\n'.encode() for i in range(50)) + b"data: [DONE]\n\n"
    f = SseFramer()
    out = b"".join(f.feed(stream[i : i + 7]) for i in range(0, len(stream), 7)) + f.flush()
    assert out == stream


def test_duplicate_endpoint_names_are_rejected() -> None:
    a = Endpoint(name="a", url="http://10.0.0.1:8000", serving="s", group_index=0)
    with pytest.raises(ValueError, match="duplicate"):
        check_unique([a, a])
