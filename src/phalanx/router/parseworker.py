"""A body-parsing worker: `python -m phalanx.router.parseworker MEMORY_BYTES|none`.

Reads questions from stdin and writes one answer per question to stdout, until stdin closes:

    question: u32 length, `parsing.question_to_wire` JSON, u64 length, the body
    answer:   u32 length, `parsing.to_wire` JSON

Nothing in the router package imports it, so `-m` runs it without a second copy.

Its address space is capped at MEMORY_BYTES first, so a body that parses into more Python objects
than that is a MemoryError here (answered 413), never memory the router itself has to find.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import sys
from typing import BinaryIO

from phalanx.router.parsing import (
    ANSWER_HEAD,
    BODY_HEAD,
    QUESTION_HEAD,
    question_from_wire,
    summarize,
    to_wire,
)


def _exactly(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    while True:
        head = _exactly(stdin, QUESTION_HEAD.size)
        if head is None:
            return  # the router closed our stdin: it is done with us
        question = _exactly(stdin, QUESTION_HEAD.unpack(head)[0])
        size = _exactly(stdin, BODY_HEAD.size)
        body = None if size is None else _exactly(stdin, BODY_HEAD.unpack(size)[0])
        if question is None or body is None:
            return
        answer = to_wire(summarize(body, question_from_wire(question)))
        del body
        stdout.write(ANSWER_HEAD.pack(len(answer)) + answer)
        stdout.flush()


def main(argv: list[str]) -> int:
    # Ctrl-C in a terminal reaches the whole process group: the router decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if argv and argv[0] != "none":
        limit = int(argv[0])
        with contextlib.suppress(ValueError, OSError):  # not every platform enforces RLIMIT_AS
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not land in the answers
    serve(stdin, stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
