"""How long reading the load gauges from one vLLM `/metrics` page takes, four ways.

    PYTHONPATH=. .venv/bin/python bench/router/parse_load.py [--engines 2] [--repeat 7] [--old-kv-name]

- `parse_load`: what the router uses; `str.find` for the four gauge names, then a regex over the
  rest of each matching line only.
- `line scan`: split the page into lines, keep those starting with one of the names.
- `regex scan`: one multi-line regex over the whole page.
- `prometheus_client`: the full parser (`text_string_to_metric_families`), every family and sample
  built, then the gauges picked out; what production-stack's scraper does.

The page is `tests/unit/router/backends/pages.vllm_page`: vLLM 0.33's families for N data-parallel
engines plus process, GC and HTTP series. Each figure is the best of `--repeat` runs of a timed
loop, in microseconds per page; every way is first checked to give the same answer.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import timeit

from tests.unit.router.backends.pages import reference_load, vllm_page

from phalanx.router.backends.load import KV_USAGE, KV_USAGE_OLD, RUNNING, WAITING, BackendLoad, parse_load

_NAMES = (WAITING, RUNNING, KV_USAGE, KV_USAGE_OLD)
_LINE = re.compile(r'(?:\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?[ \t]+(\S+)')
_WHOLE = re.compile(
    r"^[ \t]*(vllm:(?:num_requests_waiting|num_requests_running|kv_cache_usage_perc|gpu_cache_usage_perc))"
    r'(?:[ \t]*\{(?:[^"}\n]|"(?:[^"\\\n]|\\.)*")*\}[ \t]*|[ \t]+)([^ \t\r\n]+)',
    re.MULTILINE,
)


def _load(found: dict[str, list[float]]) -> BackendLoad:
    def total(name: str) -> float | None:
        return sum(found[name]) if found.get(name) else None

    kv = found.get(KV_USAGE) or found.get(KV_USAGE_OLD)
    return BackendLoad(total(WAITING), total(RUNNING), sum(kv) / len(kv) if kv else None)


def line_scan(text: str) -> BackendLoad:
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        for name in _NAMES:
            if line.startswith(name):
                m = _LINE.match(line, len(name))
                if m is not None:
                    found.setdefault(name, []).append(float(m.group(1)))
                break
    return _load(found)


def regex_scan(text: str) -> BackendLoad:
    found: dict[str, list[float]] = {}
    for m in _WHOLE.finditer(text):
        found.setdefault(m.group(1), []).append(float(m.group(2)))
    return _load(found)


def best_us(fn: object, text: str, repeat: int) -> float:
    timer = timeit.Timer(lambda: fn(text))  # type: ignore[operator]
    loops, _ = timer.autorange()
    return min(timer.repeat(repeat, loops)) / loops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--old-kv-name",
        action="store_true",
        help="V0's gpu_cache_usage_perc: the new name is searched for in vain",
    )
    args = parser.parse_args()
    engines = tuple((float(i + 1), float(2 * i), 0.1 * (i % 10)) for i in range(args.engines))
    page = vllm_page(engines=engines, old_kv_name=args.old_kv_name)
    ways = {
        "parse_load": parse_load,
        "line scan": line_scan,
        "regex scan": regex_scan,
        "prometheus_client": reference_load,
    }
    expected = parse_load(page)
    for name, fn in ways.items():
        assert fn(page) == expected, (name, fn(page), expected)
    print(f"python {sys.version.split()[0]}, {platform.machine()}, {platform.processor() or 'cpu ?'}")
    print(f"page: {args.engines} engines, {len(page)} bytes, {page.count(chr(10))} lines; {expected}")
    base = best_us(parse_load, page, args.repeat)
    for name, fn in ways.items():
        us = base if fn is parse_load else best_us(fn, page, args.repeat)
        print(f"{name:>18}: {us:9.1f} us/page  ({us / base:5.1f}x parse_load)")


if __name__ == "__main__":
    main()
