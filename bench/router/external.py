"""Tests 3 and 4: `wrk` through each contender, and LLM benchmark clients from PyPI, offline.

Each client lives in its own venv under ~/.cache/phalanx/bench-venvs/<name> (never .venv). They
are tried against our router in front of one simulator with realistic timings, with the network to
model hubs unreachable as it is here; see `CLIENTS` for what each attempt does and why.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contenders import VLLM_ROUTER_VERSION, Contender, Unavailable
from procs import MODEL, ROOT, VENVS, Processes, run_bounded, scrape, start_sims

# -- setup -----------------------------------------------------------------------------------------


def pyenv_python(version: str) -> str:
    """An interpreter of `version` (major.minor): this one, one on PATH, or a pyenv one."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found:
        return found
    for candidate in sorted((Path.home() / ".pyenv" / "versions").glob(f"{version}.*/bin/python")):
        return str(candidate)
    raise FileNotFoundError(f"no Python {version} here")


def ensure_venv(name: str, packages: list[str], python: str, log_dir: Path, timeout_s: int = 1500) -> str:
    """Creates VENVS/name with `packages` once; returns "" when ready, else why not."""
    venv = VENVS / name
    marker = venv / ".bench-installed"
    if marker.exists() and marker.read_text() == " ".join(packages):
        return ""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"pip-{name}.log"
    print(f"  setup: {name}: pip install {' '.join(packages)} (log {log})", flush=True)
    with log.open("w") as out:
        try:
            subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True, stdout=out, stderr=out)
            done = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *packages],
                stdout=out,
                stderr=out,
                timeout=timeout_s,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{type(exc).__name__}: {exc}"
    if done.returncode != 0:
        tail = [line for line in log.read_text().splitlines() if line.strip()][-2:]
        return f"pip exit {done.returncode}: " + " / ".join(tail)
    marker.write_text(" ".join(packages))
    return ""


def setup(clients: list[str], log_dir: Path) -> dict[str, str]:
    """The vllm-router venv, one venv per client, and a note if `wrk` is missing."""
    problems = {}
    why = ensure_venv("vllm-router", [f"vllm-router=={VLLM_ROUTER_VERSION}"], sys.executable, log_dir)
    if why:
        problems["vllm-router"] = why
    for name in clients:
        client = CLIENTS[name]
        try:
            python = pyenv_python(client.python)
        except FileNotFoundError as exc:
            problems[name] = str(exc)
            continue
        why = ensure_venv(client.venv, client.packages, python, log_dir)
        if why:
            problems[name] = why
    if not shutil.which("wrk"):
        problems["wrk"] = "not on PATH: apt-get install -y wrk"
    for name, why in problems.items():
        print(f"  setup: {name}: {why}", flush=True)
    return problems


def wrk_version() -> str:
    if not shutil.which("wrk"):
        return "not installed"
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False)
    return (done.stdout + done.stderr).splitlines()[0].split(" [")[0] if done.stdout + done.stderr else "?"


# -- wrk -------------------------------------------------------------------------------------------

WRK_BODY = f'{{"model": "{MODEL}", "prompt": "Say hello to the benchmark.", "max_tokens": 16}}'
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def parse_wrk(output: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.MULTILINE))
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": _ms(pct.get("50", "")),
        "p99_ms": _ms(pct.get("99", "")),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def wrk_command(url: str, connections: int = 32, duration_s: int = 8) -> list[str]:
    """One wrk thread (the machine has two cores to share with everything else)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "10s"]
    return [*argv, "-s", str(ROOT / "bench" / "router" / "post.lua"), f"{url}/v1/completions"]


def wrk_once(url: str, connections: int, duration_s: int, body: str) -> dict[str, Any]:
    """One wrk run POSTing `body` to `url`/v1/completions: `parse_wrk`'s figures plus `requests`,
    how many completed."""
    done = subprocess.run(
        wrk_command(url, connections, duration_s),
        capture_output=True,
        text=True,
        timeout=duration_s + 30,
        env={**os.environ, "WRK_BODY": body},
        check=False,
    )
    total = re.search(r"(\d+) requests in", done.stdout)
    return {**parse_wrk(done.stdout), "requests": int(total.group(1)) if total else 0}


def run_wrk(
    contenders: list[Contender],
    connections: list[int],
    duration_s: int,
    rounds: int,
    log_dir: Path,
    sim_tokenize: bool = True,
) -> dict[str, Any]:
    if not shutil.which("wrk"):
        return {"rows": [], "unavailable": {"wrk": "not installed (apt-get install -y wrk)"}}
    rows: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}
    with Processes(log_dir / "wrk") as procs:
        (sim,) = start_sims(procs, 1, ["--zero-latency"], tokenize=sim_tokenize)
        urls = {}
        for contender in contenders:
            try:
                urls[contender.spec] = contender.start(procs, [sim], "wrk")[1]
            except Unavailable as exc:
                unavailable[contender.spec] = str(exc)
        specs = list(urls)
        for rnd in range(rounds):
            for conns in connections:
                for spec in specs[rnd % len(specs) :] + specs[: rnd % len(specs)]:
                    result = wrk_once(urls[spec], conns, duration_s, WRK_BODY)
                    row = {
                        "round": rnd + 1,
                        "contender": spec,
                        "connections": conns,
                        **result,
                    }
                    rows.append(row)
                    print(
                        f"  round {rnd + 1} c={conns} {spec:<28} {row['rps']:8.0f} req/s "
                        f"p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms "
                        f"non-2xx {row['non_2xx']} {row['socket_errors']}",
                        flush=True,
                    )
    return {"rows": rows, "unavailable": unavailable, "command": " ".join(wrk_command("URL"))}


def wrk_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| connections | contender | req/s median (min–max) | p50 ms | p99 ms | non-2xx / socket errors |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for conns in sorted({r["connections"] for r in rows}):
        for spec in dict.fromkeys(r["contender"] for r in rows):
            mine = [r for r in rows if r["contender"] == spec and r["connections"] == conns]
            rps = [r["rps"] for r in mine]
            errs = "; ".join(f"{r['non_2xx']} {r['socket_errors']}".strip() for r in mine)
            lines.append(
                f"| {conns} | {spec} | {statistics.median(rps):.0f} ({min(rps):.0f}–{max(rps):.0f}) "
                f"| {statistics.median(r['p50_ms'] for r in mine):.2f} "
                f"| {statistics.median(r['p99_ms'] for r in mine):.2f} | {errs} |"
            )
    return "\n".join(lines)


# -- LLM benchmark clients ---------------------------------------------------------------------------
# Placeholders in attempts: {url} the router, {model}, {tok} the local tokenizer directory, {out} a
# fresh output directory. Every attempt asks for streaming chat at concurrency 4, prompts of about
# 200 tokens, 16 output tokens, about 40 requests.


@dataclass(frozen=True)
class Attempt:
    label: str
    args: list[str]
    # HF_HUB_OFFLINE=1: the hub is unreachable here either way; offline mode fails at once instead
    # of retrying for minutes. Not set with a local tokenizer path (aiperf then treats the path as
    # a hub id and fails).
    offline: bool = False


@dataclass(frozen=True)
class Client:
    venv: str
    packages: list[str]
    command: str  # executable inside the venv's bin/
    attempts: list[Attempt]
    python: str = "3.11"
    note: str = ""


def _aiperf(*extra: str) -> list[str]:
    return [
        "profile", "--model", "{model}", "--url", "{url}", "--endpoint-type", "chat", "--streaming",
        "--concurrency", "4", "--request-count", "40", "--isl", "200", "--osl", "16",
        "--ui", "none", "--artifact-dir", "{out}", *extra,
    ]  # fmt: skip


def _guidellm(*extra: str) -> list[str]:
    return [
        "run", "--backend", "kind=openai_http,target={url},model={model}",
        "--profile", "kind=concurrent,streams=4", "--constraint", "kind=max_requests,count=40",
        "--data", "kind=synthetic_text,prompt_tokens=200,output_tokens=16",
        "--output", "kind=json,path={out}/guidellm.json", "--disable-console-interactive", *extra,
    ]  # fmt: skip


def _vllm_bench(*extra: str) -> list[str]:
    return [
        "bench", "serve", "--backend", "openai-chat", "--base-url", "{url}",
        "--endpoint", "/v1/chat/completions", "--model", "{model}", "--dataset-name", "random",
        "--random-input-len", "200", "--random-output-len", "16", "--num-prompts", "40",
        "--max-concurrency", "4", "--save-result", "--result-dir", "{out}", "--result-filename",
        "vllm.json", *extra,
    ]  # fmt: skip


def _inference_perf(*extra: str) -> list[str]:
    return [
        "--server.type", "vllm", "--server.model_name", "{model}", "--server.base_url", "{url}",
        "--api.type", "chat", "--api.streaming", "true", "--data.type", "shared_prefix",
        "--data.shared_prefix.num_groups", "4", "--data.shared_prefix.num_prompts_per_group", "10",
        "--data.shared_prefix.system_prompt_len", "150", "--data.shared_prefix.question_len", "50",
        "--data.shared_prefix.output_len", "16", "--load.type", "constant",
        "--load.stages", '[{"rate": 8, "duration": 5}]', "--storage.local_storage.path", "{out}", *extra,
    ]  # fmt: skip


DEFAULT = "default (tokenizer = the model name, from the hub; HF_HUB_OFFLINE=1)"


def _genai_perf(*extra: str) -> list[str]:
    return [
        "profile", "-m", "{model}", "--endpoint-type", "chat", "--streaming", "-u", "{url}",
        "--concurrency", "4", "--request-count", "40", "--synthetic-input-tokens-mean", "200",
        "--output-tokens-mean", "16", "--artifact-dir", "{out}", *extra,
    ]  # fmt: skip


CLIENTS: dict[str, Client] = {
    "aiperf": Client(
        "aiperf",
        ["aiperf"],
        "aiperf",
        [
            Attempt(DEFAULT, _aiperf(), offline=True),
            Attempt("--tokenizer builtin (tiktoken o200k_base)", _aiperf("--tokenizer", "builtin")),
            Attempt("--tokenizer <local dir>", _aiperf("--tokenizer", "{tok}")),
        ],
    ),
    "guidellm": Client(
        "guidellm",
        ["guidellm"],
        "guidellm",
        [
            Attempt(DEFAULT, _guidellm(), offline=True),
            Attempt(
                "--tokenizer kind=huggingface_auto,model=<local dir>",
                _guidellm("--tokenizer", "kind=huggingface_auto,model={tok}"),
            ),
        ],
    ),
    "vllm-bench": Client(
        "vllm",
        ["vllm"],
        "vllm",
        [
            Attempt(DEFAULT, _vllm_bench(), offline=True),
            Attempt("--tokenizer <local dir>", _vllm_bench("--tokenizer", "{tok}")),
        ],
        note="`vllm bench serve` from the vllm wheel (pulls torch and CUDA libraries: ~8 GB)",
    ),
    "inference-perf": Client(
        "inference-perf",
        ["inference-perf"],
        "inference-perf",
        [
            Attempt(DEFAULT, _inference_perf(), offline=True),
            Attempt(
                "--tokenizer.pretrained_model_name_or_path <local dir>",
                _inference_perf("--tokenizer.pretrained_model_name_or_path", "{tok}"),
            ),
        ],
        python="3.12",
        note="needs Python >= 3.12 (pip finds no release for 3.11)",
    ),
    "genai-perf": Client(
        "genai-perf",
        ["genai-perf"],
        "genai-perf",
        [Attempt("--tokenizer <local dir>", _genai_perf("--tokenizer", "{tok}"))],
        note="drives the perf_analyzer binary (Triton client, C++), which no PyPI package installs",
    ),
    "llmperf": Client(
        "llmperf",
        ["llmperf"],
        "llmperf",
        [Attempt("--help", ["--help"]), Attempt("no arguments", [])],
        note="PyPI `llmperf` is not ray-project/llmperf (that one is not on PyPI)",
    ),
}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _reason(output: str) -> str:
    """The most telling line of a failed run: the last Python exception line, else the last line
    naming an error, else the whole (short) output."""
    lines = [_ANSI.sub("", line).strip(" │╭╰─╮╯") for line in output.splitlines()]
    lines = [line for line in lines if line]
    # `pkg.SomeError: message`, not a bare `Error: ...` summary line.
    raised = [line for line in lines if re.match(r"^([\w]+\.)*\w+(Error|Exception): ", line)]
    named = [line for line in lines if re.search(r"error|exception|not found|no such", line, re.IGNORECASE)]
    if raised or named:
        return (raised or named)[-1][:400]
    return " / ".join(lines)[:400] or "(no output)"


def _metrics(name: str, out: Path) -> dict[str, float]:
    """TTFT p50 (ms) and request throughput from a client's own result file, when it wrote one."""
    try:
        if name == "aiperf":
            data = json.loads((out / "profile_export_aiperf.json").read_text())
            return {
                "ttft_p50_ms": data["time_to_first_token"]["p50"],
                "rps": data["request_throughput"]["avg"],
                "requests": data["request_count"]["avg"],
            }
        if name == "guidellm":
            bench = json.loads((out / "guidellm.json").read_text())["benchmarks"][0]["metrics"]
            return {
                "ttft_p50_ms": bench["time_to_first_token_ms"]["successful"]["median"],
                "rps": bench["requests_per_second"]["successful"]["mean"],
                "requests": bench["request_totals"]["successful"],
            }
        if name == "vllm-bench":
            data = json.loads((out / "vllm.json").read_text())
            return {
                "ttft_p50_ms": data["median_ttft_ms"],
                "rps": data["request_throughput"],
                "requests": data["completed"],
            }
        if name == "inference-perf":
            data = json.loads((out / "summary_lifecycle_metrics.json").read_text())["successes"]
            return {
                "ttft_p50_ms": data["latency"]["time_to_first_token"]["median"] * 1000,
                "rps": data["throughput"]["requests_per_sec"],
                "requests": data["count"],
            }
    except (OSError, KeyError, IndexError, TypeError, ValueError):
        pass
    return {}


def make_tokenizer(directory: Path) -> str:
    """Builds the offline tokenizer with the first client venv that has `tokenizers`; "" if none."""
    script = ROOT / "bench" / "router" / "make_tokenizer.py"
    for venv in ("aiperf", "inference-perf", "guidellm", "vllm", "genai-perf"):
        python = VENVS / venv / "bin" / "python"
        if python.exists():
            done = subprocess.run(
                [str(python), str(script), str(directory)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode == 0:
                return str(directory)
    return ""


def run_clients(names: list[str], timeout_s: int, log_dir: Path) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    base = log_dir / "clients"
    tok = make_tokenizer(base / "tokenizer")
    env = {
        **os.environ,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
    }
    with Processes(base) as procs:
        sims = start_sims(procs, 1, [])
        _, url = Contender.parse("phalanx").start(procs, sims, "clients")
        for name in names:
            client = CLIENTS[name]
            binary = VENVS / client.venv / "bin" / client.command
            version = _installed_version(client)
            for index, attempt in enumerate(client.attempts):
                label, template = attempt.label, attempt.args
                out = base / f"{name}-{index}"
                out.mkdir(parents=True, exist_ok=True)
                row: dict[str, Any] = {"client": name, "version": version, "attempt": label}
                if not binary.exists():
                    rows.append(row | {"worked": False, "reason": f"not installed ({binary})"})
                    continue
                if "{tok}" in " ".join(template) and not tok:
                    rows.append(row | {"worked": False, "reason": "no local tokenizer could be built"})
                    continue
                fields = {"{url}": url, "{model}": MODEL, "{tok}": tok, "{out}": str(out)}
                argv = [str(binary), *(_fill(part, fields) for part in template)]
                started = time.monotonic()
                metrics: dict[str, float] = {}
                extra_env = {"HF_HUB_OFFLINE": "1"} if attempt.offline else {}
                before = scrape(sims[0])
                code, output = run_bounded(argv, timeout_s, env | extra_env, out)
                after = scrape(sims[0])
                served = after["vllm:request_success_total"] - before["vllm:request_success_total"]
                if served:
                    metrics["sim_requests"] = served
                    metrics["sim_prompt_tokens_mean"] = (
                        after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"]
                    ) / served
                (out / "output.log").write_text(output)
                metrics |= _metrics(name, out)
                worked = code == 0 and "rps" in metrics
                row |= {
                    "worked": worked,
                    "exit": code,
                    "seconds": round(time.monotonic() - started, 1),
                    "command": " ".join(shlex.quote(a) for a in argv).replace(str(VENVS), "$VENVS"),
                    **metrics,
                }
                if not worked:
                    row["reason"] = _reason(output)
                rows.append(row)
                print(
                    f"  {name} [{label}]: {'worked' if worked else 'failed'} (exit {code}) "
                    + (
                        f"TTFT p50 {metrics['ttft_p50_ms']:.1f} ms, {metrics['rps']:.1f} req/s"
                        if worked
                        else row.get("reason", "")
                    ),
                    flush=True,
                )
    return {"rows": rows, "tokenizer": tok}


def _fill(part: str, fields: dict[str, str]) -> str:
    for key, value in fields.items():
        part = part.replace(key, value)
    return part


def _installed_version(client: Client) -> str:
    python = VENVS / client.venv / "bin" / "python"
    if not python.exists():
        return "not installed"
    done = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({client.packages[0]!r}))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() or "?"


def clients_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| client | version | attempt | result | TTFT p50 ms | req/s | requests | prompt tokens (sim) "
        "| why not / note |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ttft = f"{row['ttft_p50_ms']:.1f}" if "ttft_p50_ms" in row else ""
        rps = f"{row['rps']:.1f}" if "rps" in row else ""
        requests = f"{row['requests']:.0f}" if "requests" in row else ""
        reason = row.get("reason", "").replace("|", "\\|")
        prompt = f"{row['sim_prompt_tokens_mean']:.0f}" if "sim_prompt_tokens_mean" in row else ""
        lines.append(
            f"| {row['client']} | {row['version']} | {row['attempt']} "
            f"| {'**worked**' if row['worked'] else 'failed'} | {ttft} | {rps} | {requests} | {prompt} "
            f"| {reason} |"
        )
    return "\n".join(lines)
