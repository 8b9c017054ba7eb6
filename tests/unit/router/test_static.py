"""`--backend URL` values become endpoints, or one clear error naming the value."""

from __future__ import annotations

import pytest

from phalanx.router.static import BackendURLError, static_endpoints


def test_urls_become_ready_endpoints_whose_models_are_learned() -> None:
    a, b = static_endpoints(["http://127.0.0.1:8100/", "https://engine.example"])
    assert (a.name, a.url, a.models, a.routable) == ("127.0.0.1:8100", "http://127.0.0.1:8100", (), True)
    assert (b.name, b.url) == ("engine.example", "https://engine.example:443")
    assert (a.group_index, b.group_index) == (0, 1)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("localhost:8000", "expected http://host:port"),
        ("ftp://h:1", "expected http://host:port"),
        ("http://h:99999", "port is not a number"),
        ("http://h:8000/v1", "give the server's root"),
    ],
)
def test_bad_urls_are_named_with_the_fix(url: str, says: str) -> None:
    with pytest.raises(BackendURLError, match=says) as info:
        static_endpoints([url])
    assert url in str(info.value)


def test_the_same_backend_twice_is_an_error() -> None:
    with pytest.raises(BackendURLError, match="given twice"):
        static_endpoints(["http://h:1", "http://h:1/"])


def test_a_query_string_marks_prefill_and_decode_engines() -> None:
    p, d, s, a = static_endpoints(
        [
            "http://10.0.0.1:8000?pd-role=prefill",
            "http://10.0.0.2:8000/?pd-role=decode&pd-pair-key=rack-1",
            "http://10.0.0.3:30000?pd-role=prefill&pd-protocol=sglang&bootstrap-port=9001",
            "http://10.0.0.4:8000",
        ]
    )
    assert (p.url, p.pd_role, p.pd_protocol, p.pd_pair_key, p.bootstrap_port) == (
        "http://10.0.0.1:8000",
        "prefill",
        "vllm",
        "static",
        None,
    )
    assert (d.url, d.name, d.pd_role, d.pd_pair_key) == (
        "http://10.0.0.2:8000",
        "10.0.0.2:8000",
        "decode",
        "rack-1",
    )
    assert (s.pd_protocol, s.bootstrap_port) == ("sglang", 9001)
    assert a.pd_role is None
    (default_port,) = static_endpoints(["http://h:1?pd-role=prefill&pd-protocol=sglang"])
    assert default_port.bootstrap_port == 8998


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://h:1?pd-role=combined", "pd-role must be prefill or decode"),
        ("http://h:1?pd-protocol=sglang", "pd-role must be prefill or decode"),
        ("http://h:1?pd-role=decode&pd-protocol=trt", "pd-protocol must be vllm or sglang"),
        ("http://h:1?pd-role=prefill&role=x", "unknown key 'role'"),
        ("http://h:1?pd-role=prefill&pd-role=decode", "a key given twice"),
        ("http://h:1?pd-role", "not key=value pairs"),
        ("http://h:1?pd-role=prefill&bootstrap-port=9", "SGLang prefill engines only"),
        ("http://h:1?pd-role=prefill&pd-protocol=sglang&bootstrap-port=0", "from 1 to 65535"),
        ("http://h:1?pd-role=prefill&pd-protocol=sglang&bootstrap-port=x", "from 1 to 65535"),
    ],
)
def test_bad_pd_queries_are_named_with_the_fix(url: str, says: str) -> None:
    with pytest.raises(BackendURLError, match=says) as info:
        static_endpoints([url])
    assert url in str(info.value)
