"""Pure request/response shaping: body validation and header filtering, kept apart from the socket code."""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from json.scanner import make_scanner
from typing import Any, Final


@dataclass(frozen=True)
class ParsedRequest:
    model: str
    stream: bool
    # The whole body, decoded once: routing (prompt, session) and token estimates read it.
    payload: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class RequestError:
    status: int
    message: str
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def parse_request(body: bytes) -> ParsedRequest | RequestError:
    """Read just what routing needs; the endpoint validates the rest."""
    payload = request_payload(body)
    if isinstance(payload, RequestError):
        return payload
    return ParsedRequest(model=payload["model"], stream=payload.get("stream") is True, payload=payload)


# json.loads's own scanner (C where `_json` is), called without the three Python functions around it.
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed has it as a class
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")  # what json.decoder skips after a value


def _loads_object(text: str) -> Any:
    """`json.loads(text)` for a text that starts with `{`: the same value, the same errors."""
    try:
        payload, end = _SCAN(text, 0)
    except StopIteration as err:  # a value missing, here or nested: as JSONDecoder.raw_decode says it
        raise json.JSONDecodeError("Expecting value", text, err.value) from None
    end = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]  # matches the empty string
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return payload


def request_payload(body: bytes) -> dict[str, Any] | RequestError:
    """The decoded body, a JSON object whose `model` is a non-empty string, or why not."""
    try:
        if body[:1] == b"{" and body[1:2] != b"\0":
            # What `json.loads` would detect (no BOM, no UTF-16/32 zero byte), without asking it.
            payload = _loads_object(body.decode("utf-8", "surrogatepass"))
        else:
            payload = json.loads(body)
    except ValueError as exc:  # not UTF-8, not JSON, or a number too long to convert
        return RequestError(400, f"The request body is not valid JSON: {exc}")
    except RecursionError:
        return RequestError(400, "The request body is not valid JSON: it is nested too deeply.")
    if not isinstance(payload, dict):
        return RequestError(400, "The request body must be a JSON object.")
    model = payload.get("model")
    if model is None:
        return RequestError(400, "The `model` field is required.", param="model")
    if not isinstance(model, str) or not model:
        return RequestError(400, "The `model` field must be a non-empty string.", param="model")
    return payload


def unknown_model(model: str) -> RequestError:
    # vLLM's wording, which clients may match on.
    return RequestError(404, f"The model `{model}` does not exist.", param="model")


def no_endpoint(model: str, retry_after_s: int) -> RequestError:
    return RequestError(
        503,
        f"No endpoint serving `{model}` is ready; retry later.",
        headers={"Retry-After": str(retry_after_s)},
    )


# RFC 9110 §7.6.1 plus the ones the transport recomputes.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


Headers = list[tuple[str, str]]


def _lowered(headers: Iterable[tuple[str, str]]) -> tuple[Headers, list[str], frozenset[str]]:
    """The pairs, their lower-cased names, and the hop-by-hop names among them (RFC 9110 §7.6.1
    and those listed in `Connection`): one pass over the names, on the request path per request."""
    pairs = list(headers)
    names = [k.lower() for k, _ in pairs]
    if "connection" not in names:
        return pairs, names, _HOP_BY_HOP
    listed = {
        token.strip().lower()
        for (_, value), name in zip(pairs, names, strict=True)
        if name == "connection"
        for token in value.split(",")
    }
    return pairs, names, _HOP_BY_HOP | listed


def upstream_request_headers(
    headers: Iterable[tuple[str, str]], request_id: str, drop: Iterable[str] = ()
) -> Headers:
    """What goes to the endpoint: end-to-end headers minus `drop` (lower-case names), our request id."""
    pairs, names, hop = _lowered(headers)
    # The body was read (and, if the client compressed it, decoded) before it is sent on: a
    # Content-Encoding would no longer hold, and an Expect: 100-continue would make the client
    # library wait for the endpoint's 100 before sending a body that is already here.
    dropped = hop | {"x-request-id", "content-encoding", "expect", *drop}
    out = [pair for pair, name in zip(pairs, names, strict=True) if name not in dropped]
    out.append(("X-Request-Id", request_id))
    # Bytes are relayed undecoded; without this the client library would ask for gzip on the
    # client's behalf and the client would get a body it never asked for.
    if "accept-encoding" not in names or "accept-encoding" in dropped:
        out.append(("Accept-Encoding", "identity"))
    return out


def client_response_headers(headers: Iterable[tuple[str, str]], request_id: str) -> Headers:
    pairs, names, hop = _lowered(headers)
    out = []
    length: str | None = None
    chunked = event_stream = False
    for pair, name in zip(pairs, names, strict=True):
        if name not in hop:
            out.append(pair)
        elif name == "content-length" and length is None:
            length = pair[1]
        elif name == "transfer-encoding":
            chunked = True
        if name == "content-type" and pair[1].lower().startswith("text/event-stream"):
            event_stream = True
    # The body is relayed byte for byte, so a Content-Length still holds (unless chunked). Not on
    # an event stream: one cut short is ended with an error event, and a declared length would
    # keep the client waiting for bytes that never come.
    if length is not None and not chunked and not event_stream:
        out.append(("Content-Length", length))
    if "x-request-id" not in names or "x-request-id" in hop:
        out.append(("X-Request-Id", request_id))
    return out


def request_id(headers: Mapping[str, str]) -> str:
    """The client's X-Request-Id (the first one, as given, unless empty), else a new id.

    `headers` is case-insensitive (a `CIMultiDictProxy`, as both fronts give): one lookup in C
    instead of a pass over the headers in Python."""
    return headers.get("X-Request-Id") or new_request_id()


# A new id is 16 random hex digits drawn once per process, then a 64-bit counter in 16 more: 32
# lower-case hex digits like uuid4().hex, unique across processes without drawing randomness per
# request (uuid4 was 2.4 % of the router's time). The counter goes through a per-process
# one-to-one map (times a random odd number, plus a random offset, modulo 2**64) so that two ids
# do not show how many requests came between them. A forked child draws its own.
class _RequestIds:
    __slots__ = ("count", "factor", "offset", "prefix")

    def __init__(self) -> None:
        self.seed()

    def seed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.factor = int.from_bytes(os.urandom(8)) | 1  # odd: invertible modulo 2**64
        self.offset = int.from_bytes(os.urandom(8))
        self.count = itertools.count()


_ids = _RequestIds()
os.register_at_fork(after_in_child=_ids.seed)
_LOW64 = (1 << 64) - 1


def new_request_id() -> str:
    """An id no other request of any process is given (2**64 per process before the counter
    would need a 17th digit)."""
    return f"{_ids.prefix}{(next(_ids.count) * _ids.factor + _ids.offset) & _LOW64:016x}"


def model_cards(models: Iterable[str], created: int) -> dict[str, object]:
    """vLLM's `/v1/models` shape, owned by the router."""
    return {
        "object": "list",
        "data": [
            {
                "id": m,
                "object": "model",
                "created": created,
                "owned_by": "phalanx",
                "root": m,
                "parent": None,
                "max_model_len": None,
                "permission": [],
            }
            for m in models
        ],
    }


def models_from_listing(payload: object) -> tuple[str, ...]:
    """Model ids from an endpoint's `/v1/models` answer; anything malformed yields none."""
    if not isinstance(payload, dict):
        return ()
    data = payload.get("data")
    if not isinstance(data, list):
        return ()
    ids = (item.get("id") for item in data if isinstance(item, dict))
    return tuple(i for i in ids if isinstance(i, str) and i)
