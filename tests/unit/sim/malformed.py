"""Hypothesis strategies for request bodies a client may get wrong in every way: the right fields
with values of any JSON type (nested, huge, with lone surrogates), unknown fields, and bytes that
are not JSON at all. Shared by the pure test of `decode_request` and the HTTP test of a process."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Strings a tokenizer or an encoder may trip on: lone surrogates, NUL, long runs of whitespace.
awkward_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", " " * 200, "\u2028\u00a0\t", "😀" * 5, ""]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    awkward_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(awkward_text, inner, max_size=4)),
    max_leaves=12,
)
content_parts = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", 3]), "text": json_values}),
        json_values,
    ),
    max_size=3,
)
messages = st.one_of(
    json_values,
    st.lists(
        st.fixed_dictionaries(
            {"role": st.one_of(st.sampled_from(["user", "system", "assistant"]), json_values)},
            optional={"content": st.one_of(awkward_text, content_parts, json_values)},
        ),
        max_size=3,
    ),
)
STREAM_OPTIONS = dict.fromkeys(["include_usage", "continuous_usage_stats"], json_values)
FIELDS = {
    "model": st.one_of(st.just("tiny"), json_values),
    "prompt": st.one_of(awkward_text, st.lists(awkward_text, max_size=3), json_values),
    "messages": messages,
    "max_tokens": st.one_of(st.integers(-3, 2000), json_values),
    "max_completion_tokens": st.one_of(st.integers(-3, 2000), json_values),
    "n": st.one_of(st.integers(-2, 3), json_values),
    "seed": st.one_of(st.integers(-(2**65), 2**65), json_values),
    "stop": st.one_of(awkward_text, st.lists(awkward_text, max_size=3), json_values),
    "stream": st.one_of(st.booleans(), json_values),
    "stream_options": st.one_of(st.fixed_dictionaries({}, optional=STREAM_OPTIONS), json_values),
    "temperature": json_values,
    "top_p": json_values,
    "logprobs": json_values,
}


def _encode(body: Any) -> bytes:
    # ensure_ascii writes a lone surrogate as a \ud800 escape, as a client in another language may.
    return json.dumps(body, allow_nan=True).encode()


json_bodies = st.one_of(
    st.fixed_dictionaries({}, optional=FIELDS).map(_encode),
    st.dictionaries(st.sampled_from(sorted(FIELDS)), json_values, max_size=5).map(_encode),
    json_values.map(_encode),
)
raw_bodies = st.one_of(
    st.binary(max_size=64),
    st.integers(1, 200_000).map(lambda n: b'{"prompt": ' + b"[" * n + b"]" * n + b"}"),
    st.integers(1, 200_000).map(lambda n: b'{"messages": ' + b'{"a":' * n + b"1" + b"}" * n + b"}"),
    st.sampled_from(
        [
            b"",
            b"{",
            b'{"prompt": "\xff\xfe"}',
            b'{"prompt": "\\ud800"}',
            b'{"prompt": 1e999999}',
            b'{"prompt": [' + b"9" * 5000 + b"]}",
            b'{"prompt": NaN, "max_tokens": Infinity}',
            b'\xef\xbb\xbf{"prompt": "bom"}',
        ]
    ),
)
bodies = st.one_of(json_bodies, raw_bodies)
