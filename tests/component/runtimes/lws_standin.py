"""A stand-in for a multi-node engine launched the way LeaderWorkerSet's SGLang/vLLM examples do.

It is not an engine. It takes the flags those examples pass (`--dist-init-addr HOST:PORT --nnodes N
--node-rank R [--port P]`), writes its argv and environment to `$RECORD_DIR/<pod>.json`, and then:
rank 0 listens on its pod IP at the rendezvous port and serves `GET /health` on `--port`, 200 only
once every other rank has connected and said its rank; ranks 1..N-1 connect to HOST:PORT (retrying
while it is not up yet), say their rank and stay. So a Ready entry pod proves each worker reached
it through the address it was given.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def record(argv: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith(("LWS_", "ENTRY_", "POD_", "SEEN_"))}
    path = Path(os.environ["RECORD_DIR"]) / f"{os.environ['POD_NAME']}.json"
    path.write_text(json.dumps({"argv": argv, "env": env}))


def lead(port: int, nnodes: int, http_port: int) -> None:
    joined: set[int] = set()
    rendezvous = socket.create_server((os.environ["POD_IP"], port))

    def accept() -> None:
        while True:
            conn, _ = rendezvous.accept()
            joined.add(int(conn.recv(16).decode()))
            print(f"rank {sorted(joined)} joined", flush=True)

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            done = joined == set(range(1, nnodes))
            self.send_response(200 if done else 503)
            self.end_headers()
            self.wfile.write(json.dumps(sorted(joined)).encode())

        def log_message(self, *_: object) -> None:
            pass

    threading.Thread(target=accept, daemon=True).start()
    ThreadingHTTPServer((os.environ["POD_IP"], http_port), Health).serve_forever()


def follow(host: str, port: int, rank: int) -> None:
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    conn.sendall(str(rank).encode())
    print(f"joined {host}:{port} as rank {rank}", flush=True)
    while True:
        time.sleep(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dist-init-addr", required=True)
    parser.add_argument("--nnodes", type=int, required=True)
    parser.add_argument("--node-rank", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    record(argv)
    host, _, port = args.dist_init_addr.rpartition(":")
    if args.node_rank == 0:
        lead(int(port), args.nnodes, args.port)
    else:
        follow(host, int(port), args.node_rank)


if __name__ == "__main__":
    main()
