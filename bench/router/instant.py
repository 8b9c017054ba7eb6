"""An OpenAI-shaped backend that answers at once, so a router in front of it is the bottleneck (issue 18).

    python bench/router/instant.py --port 8100 [--model bench-model] [--chunks 4]

POST /v1/completions and /v1/chat/completions: a fixed small JSON answer, or `--chunks` SSE events
and `data: [DONE]` when the body asks for `"stream": true`. GET /v1/models, /health and /metrics
answer what a router's discovery, health checks and load scraper expect. Keep-alive; one asyncio
Protocol per connection on uvloop where installed. Only as much HTTP as the load generators send
(a head, then a Content-Length body; no chunked requests): a benchmark fixture, not a server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

MODEL = "bench-model"


def _answer(status: str, content_type: bytes, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type.decode()}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _chunked(content_type: bytes, events: list[bytes]) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type.decode()}\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = [head.encode()]
    for event in events:
        out.append(b"%x\r\n%s\r\n" % (len(event), event))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def answers(model: str, chunks: int) -> dict[str, bytes]:
    """Every response this server sends, prepared once."""
    usage = {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks}
    completion = {
        "id": "cmpl-instant",
        "object": "text_completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "text": " ok" * chunks, "finish_reason": "length"}],
        "usage": usage,
    }
    chat = {
        "id": "chatcmpl-instant",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ok" * chunks},
                "finish_reason": "length",
            }
        ],
        "usage": usage,
    }

    def events(kind: str) -> list[bytes]:
        out = []
        for i in range(chunks):
            if kind.startswith("chat"):
                choice: dict[str, object] = {"index": 0, "delta": {"content": " ok"}, "finish_reason": None}
            else:
                choice = {"index": 0, "text": " ok", "finish_reason": None}
            if i == chunks - 1:
                choice["finish_reason"] = "length"
            event = {"id": "instant", "object": kind, "created": 0, "model": model, "choices": [choice]}
            out.append(b"data: " + json.dumps(event).encode() + b"\n\n")
        out.append(b"data: [DONE]\n\n")
        return [b"".join(out)]  # one write: an instant engine's whole stream at once

    js, sse = b"application/json", b"text/event-stream"
    models = {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "bench"}]}
    metrics = (
        f'vllm:num_requests_waiting{{model_name="{model}"}} 0\n'
        f'vllm:num_requests_running{{model_name="{model}"}} 0\n'
        f'vllm:kv_cache_usage_perc{{model_name="{model}"}} 0\n'
    ).encode()
    return {
        "completion": _answer("200 OK", js, json.dumps(completion).encode()),
        "chat": _answer("200 OK", js, json.dumps(chat).encode()),
        "completion_stream": _chunked(sse, events("text_completion")),
        "chat_stream": _chunked(sse, events("chat.completion.chunk")),
        "models": _answer("200 OK", js, json.dumps(models).encode()),
        "health": _answer("200 OK", js, b"{}"),
        "metrics": _answer("200 OK", b"text/plain; version=0.0.4", metrics),
        "missing": _answer("404 Not Found", js, b'{"error":{"message":"not found"}}'),
    }


class Instant(asyncio.Protocol):
    def __init__(self, table: dict[str, bytes]) -> None:
        self.table = table
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = []
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buffer[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                break
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            out.append(self.respond(head.split(b" ", 2)[:2], body))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def respond(self, line: list[bytes], body: bytes) -> bytes:
        method, path = [*line, b"", b""][:2]
        path = path.split(b"?", 1)[0]
        if method == b"POST" and path in (b"/v1/completions", b"/v1/chat/completions"):
            kind = "chat" if path == b"/v1/chat/completions" else "completion"
            stream = b'"stream":true' in body.replace(b" ", b"")
            return self.table[kind + "_stream" if stream else kind]
        if method == b"GET":
            name = {b"/v1/models": "models", b"/health": "health", b"/metrics": "metrics"}.get(path)
            if name is not None:
                return self.table[name]
        return self.table["missing"]


async def serve(host: str, port: int, model: str, chunks: int) -> None:
    table = answers(model, chunks)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    server = await loop.create_server(lambda: Instant(table), host, port, backlog=4096)
    async with server:
        await stopping.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--chunks", type=int, default=4, help="SSE events in a streamed answer")
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(args.host, args.port, args.model, args.chunks))


if __name__ == "__main__":
    main()
