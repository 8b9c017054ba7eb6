"""Nanoseconds per call of the router's own per-request functions, before and after (issue 18).

    .venv/bin/python bench/router/micro.py [--before REF] [--repeat 7] [--number 20000]

"Before" is the code at REF (default: main before the cuts), read from git and loaded beside
the working tree's, so both run in one process, interleaved; the best of `--repeat` timings is
printed (the least disturbed by other work on a shared machine). Each pair is first checked to
give the same answer on the inputs it is timed on.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import textwrap
import timeit
import types
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from phalanx.router.backends.load import BackendLoad
from phalanx.router.endpoints import Endpoint
from phalanx.router.messages import request_id
from phalanx.router.parsing import Question, summarize
from phalanx.router.policies import BackendState, Decision, PolicyConfig, RoutingRequest
from phalanx.router.policies.registry import make_policy
from phalanx.router.policies.scored import ScoredPolicy
from phalanx.router.server import Router

ROOT = Path(__file__).resolve().parents[2]
SRC = "src/phalanx/router/"


def _source(ref: str, path: str) -> str:
    return subprocess.run(
        ["git", "show", f"{ref}:{SRC}{path}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def module_at(ref: str, path: str, **overrides: object) -> types.ModuleType:
    """`path` as it was at REF, as a module of its own; `overrides` replace names after loading."""
    name = f"before_{path.replace('/', '_').removesuffix('.py')}"
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(_source(ref, path), f"{ref}:{path}", "exec"), module.__dict__)
    module.__dict__.update(overrides)
    return module


def method_at(ref: str, path: str, cls: str, method: str, **names: object) -> Callable[..., Any]:
    """One method of `cls` in `path` at REF, as a plain function over `names`."""
    source = _source(ref, path)
    tree = ast.parse(source)
    klass = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    node = next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == method)
    text = textwrap.dedent(ast.get_source_segment(source, node) or "")
    namespace: dict[str, Any] = dict(names)
    exec(compile("from __future__ import annotations\n" + text, f"{ref}:{path}", "exec"), namespace)
    function: Callable[..., Any] = namespace[method]
    return function


# -- inputs ------------------------------------------------------------------------------------


def _endpoint(name: str) -> Endpoint:
    return Endpoint(name=name, url=f"http://127.0.0.1/{name}", serving="bench", group_index=0, models=("m",))


ENDPOINTS = (_endpoint("b0"), _endpoint("b1"))
# What wrk sends through the capacity run; its prompt is shorter than one prefix block.
WRK_HEADERS = [("Host", "127.0.0.1:8000"), ("Content-Type", "application/json"), ("Content-Length", "77")]
WRK_BODY = b'{"model": "m", "prompt": "Say hello to the benchmark.", "max_tokens": 4}'
QUESTION = Question(headers={}, session_header="x-session-id", prefix_chars=32768, want_tokens=False)
SHORT = RoutingRequest(model="m", prefix_text="Say hello to the benchmark.")
LONG = RoutingRequest(model="m", prefix_text="You are a helpful assistant. " * 40, session="user-7")


def _fake_router(readings: dict[str, BackendLoad] | None) -> Any:
    scraper = None if readings is None else SimpleNamespace(reading=lambda name, now: readings.get(name))
    return SimpleNamespace(
        _scraper=scraper,
        detector=SimpleNamespace(ejected=lambda now: frozenset()),
        endpoints=lambda: ENDPOINTS,
        _in_flight={"b0": 1, "b1": 0},
    )


def _pair(
    label: str, before: Callable[[], object], after: Callable[[], object]
) -> tuple[str, Callable[[], object], Callable[[], object]]:
    return label, before, after


def cases(ref: str) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    messages_before = module_at(ref, "messages.py")
    state_before = module_at(ref, "policies/state.py")
    scored_before = module_at(
        ref, "policies/scored.py", loads=state_before.loads, kv_usages=state_before.kv_usages
    )
    states_before = method_at(ref, "server.py", "Router", "_states", BackendState=BackendState)
    request_before = module_at(ref, "policies/request.py")
    parsing_before = module_at(
        ref,
        "parsing.py",
        parse_request=messages_before.parse_request,
        routing_request=request_before.routing_request,
    )
    auto = make_policy("auto")
    assert isinstance(auto, ScoredPolicy)
    # The same policy as the registry builds, from the code at REF, sharing its prefix index.
    auto_before = scored_before.ScoredPolicy(
        "auto",
        PolicyConfig(),
        auto._index,
        prefix_weight=auto._prefix,
        load_weight=auto._load,
        kv_weight=auto._kv,
        session_weight=auto._session,
    )
    idle = [BackendState(ep) for ep in ENDPOINTS]
    # What the instant backends' /metrics page reports: nothing waiting, no KV cache in use.
    scraped_idle = [
        BackendState(ep, in_flight=i, waiting=0.0, running=0.0, kv_cache_usage=0.0)
        for i, ep in enumerate(ENDPOINTS)
    ]
    busy = [
        BackendState(ENDPOINTS[0], in_flight=3, waiting=1.0, kv_cache_usage=0.4),
        BackendState(ENDPOINTS[1], in_flight=2, waiting=None, kv_cache_usage=0.1),
    ]
    auto.record(LONG, ENDPOINTS[0], 0.0)
    plain, scraped = _fake_router(None), _fake_router({"b0": BackendLoad(1.0, 2.0, 0.3)})
    states_after = Router._states

    def moved(states: Callable[..., Any]) -> Callable[[], object]:
        moving = _fake_router(None)

        def call() -> object:
            moving._in_flight["b0"] ^= 1  # a request came or went since the last decision
            return states(moving, "m", frozenset(), 1.0)

        return call

    return [
        _pair(
            "request_id: no client id (wrk's headers)",
            lambda: messages_before.request_id(WRK_HEADERS),
            lambda: request_id(WRK_HEADERS),
        ),
        _pair(
            "summarize: wrk's body, in process",
            lambda: parsing_before.summarize(WRK_BODY, QUESTION),
            lambda: summarize(WRK_BODY, QUESTION),
        ),
        _pair(
            "ScoredPolicy.choose auto: 2 idle, short prompt, no metrics",
            lambda: auto_before.choose(SHORT, idle, 1.0),
            lambda: auto.choose(SHORT, idle, 1.0),
        ),
        _pair(
            "ScoredPolicy.choose auto: short prompt, metrics all 0 (capacity)",
            lambda: auto_before.choose(SHORT, scraped_idle, 1.0),
            lambda: auto.choose(SHORT, scraped_idle, 1.0),
        ),
        _pair(
            "ScoredPolicy.choose auto: 2 busy, 9 blocks, session, metrics",
            lambda: auto_before.choose(LONG, busy, 1.0),
            lambda: auto.choose(LONG, busy, 1.0),
        ),
        _pair(
            "Router._states: 2 endpoints, no scraper",
            lambda: states_before(plain, "m", frozenset(), 1.0),
            lambda: states_after(plain, "m", frozenset(), 1.0),
        ),
        _pair(
            "Router._states: 2 endpoints, one reading",
            lambda: states_before(scraped, "m", frozenset(), 1.0),
            lambda: states_after(scraped, "m", frozenset(), 1.0),
        ),
        _pair(
            "Router._states: 2 endpoints, an in-flight count moved", moved(states_before), moved(states_after)
        ),
    ]


def same(before: object, after: object) -> bool:
    if isinstance(before, str):  # ids: only the form can agree
        return isinstance(after, str) and len(before) == len(after) == 32
    if type(before).__name__ == "Summary":  # classes from two modules: compare the fields
        return repr(before) == repr(after)
    if isinstance(before, Decision) and isinstance(after, Decision):  # the rotation moved on between them
        return (before.policy, before.reason, before.prefix_match) == (
            after.policy,
            after.reason,
            after.prefix_match,
        )
    return before == after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="cdff89c", help="the commit to compare with")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'function and input':<64} {'before ns':>10} {'after ns':>10} {'after/before':>13}")
    for label, before, after in cases(args.before):
        # Rotation state advances per call: compare answers from two fresh runs of each.
        assert same(before(), after()), label
        best_before = best_after = float("inf")
        for _ in range(args.repeat):
            best_before = min(best_before, timeit.timeit(before, number=args.number))
            best_after = min(best_after, timeit.timeit(after, number=args.number))
        b, a = best_before * 1e9 / args.number, best_after * 1e9 / args.number
        print(f"{label:<64} {b:>10.0f} {a:>10.0f} {a / b:>13.2f}")


if __name__ == "__main__":
    main()
