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
