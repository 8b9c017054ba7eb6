#!/usr/bin/env python3
"""Parse every engine command line Phalanx renders with the real engines' own argument parsers.

A development check, run by hand (heavy: the engines are ~10 GB each; never in the default tests);
bench/engines/README.md says how to run it and what it covers:

    bash hack/engines/install.sh                      # once: scratch venvs outside the repository
    .venv/bin/python hack/engines/check_argv.py [--only=SUBSTRING] [--json FILE] [--argv]

It compiles a set of ModelDeployments (aggregated and prefill/decode, every engine, both vLLM
launchers, one and several nodes) with the imported checkout's compiler, adds the checkout's
examples/, takes each pod's engine argv and env, and hands them to parse_vllm.py and parse_sglang.py,
which run inside the engines' venvs (no Phalanx there) and parse them the way `vllm serve` and
`python -m sglang.launch_server` do at start-up. For PD roles it compares the side Phalanx labels the
role with against the side the engine runs as. Controls (controls.py) with known verdicts run beside.
Prints Markdown; exits 1 when a case fails to compile (unless the refusal is expected), an argv is
rejected, an engine env name is unknown to the engine, or a role's labels differ from its engine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from controls import CONTROLS  # this script's folder comes first on sys.path

from phalanx.api import ModelDeployment, parse_resource
from phalanx.api.errors import SpecError
from phalanx.compiler import compile_deployment

HERE = Path(__file__).resolve().parent
ENGINES_CACHE = Path(os.environ.get("PHALANX_ENGINES_CACHE", Path.home() / ".cache/phalanx/engines"))
VERSIONS = {
    "vllm": os.environ.get("VLLM_VERSION", "0.33.0"),
    "sglang": os.environ.get("SGLANG_VERSION", "0.5.23"),
}
# What Kubernetes and the pod's shell would put in place of $(VAR) and $VAR: any plausible value.
SAMPLE_VALUES = {
    "POD_IP": "10.0.0.7",
    "ENTRY_ADDRESS": "10.0.0.5",
    "WORKER_INDEX": "1",
    "GROUP_SIZE": "2",
    "HF_TOKEN": "hf_placeholder",
}
_VAR = re.compile(r"\$\((\w+)\)|\$\{(\w+)\}|\$(\w+)")

_PD = {"prefill": {"replicas": 1}, "decode": {"replicas": 1}}
# Cases the compiler must refuse, and a text its error must contain: vLLM 0.33.0 has no
# P2pNcclConnector (the parse proves it: see the controls), so a p2pnccl recipe could not start.
EXPECTED_REFUSALS = {
    "vllm-ray-pd-p2pnccl": "P2pNcclConnector",
    "vllm-native-pd-p2pnccl": "P2pNcclConnector",
    # Both engines' parsers take a unique prefix of a flag (argparse's allow_abbrev): an abbreviated PD
    # flag in engineArgs changes the side or the port the engine runs with. Either the compiler refuses
    # it, naming the flag, or the labels must still agree with what the engine runs as.
    "vllm-ray-pd-nixl-abbreviated-engineargs": "--kv-transfer",
    "sglang-pd-mooncake-abbreviated-engineargs": "--disaggregation-bootstrap",
    # engineArgs win over our flags; a --port of theirs moves the engine off the port named http that
    # the probes and the router use, so such a pod would never be ready.
    "vllm-native-engineargs-port": "--port",
    "sglang-engineargs-port": "--port",
}


# Pods of the checkout's examples/ that the engine must refuse, and a text its error must contain. The
# seed llama-multinode.yaml is kept as written: it starts vLLM with neither Ray nor --nnodes, and vLLM
# 0.33 refuses 16 GPUs of tensor x pipeline parallel on one 8-GPU node (its corrected form is beside it).
EXPECTED_REJECTIONS = {
    "examples/llama-multinode.yaml:llama-multinode/405b/entry": (
        "World size (16) is larger than the number of available GPUs (8)"
    ),
}


def _deployment(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": spec,
    }


def _cases() -> list[dict[str, Any]]:
    small = {"model": "llama-3.1-8b-instruct", "instanceType": "g6e.xlarge"}
    big = {
        "model": "llama-3.1-405b-instruct",
        "instanceType": "p5.48xlarge",
        "maxNodes": 2,
        "maxModelLen": 8192,
    }
    cases = []
    for engine, launchers in (("vllm", ("ray", "native")), ("sglang", ("ray",))):
        for launcher in launchers:
            tag = f"{engine}-{launcher}" if engine == "vllm" else engine
            extra = {"launcher": launcher} if engine == "vllm" else {}
            cases += [
                _deployment(f"{tag}-1node", engine=engine, **extra, **small),
                _deployment(
                    f"{tag}-dp8",
                    engine=engine,
                    **extra,
                    model="llama-3.1-8b-instruct",
                    instanceType="p5.48xlarge",
                    tensorParallelSize=1,
                    dataParallelSize=8,
                ),
                _deployment(f"{tag}-2node", engine=engine, **extra, **big),
                _deployment(
                    f"{tag}-fp8-revision",
                    engine=engine,
                    **extra,
                    model={"name": "llama-3.3-70b-instruct", "revision": "main"},
                    instanceType="p5.48xlarge",
                    dtype="fp8",
                    maxModelLen=16384,
                ),
                _deployment(
                    f"{tag}-native-fp8",
                    engine=engine,
                    **extra,
                    model="deepseek-v3",
                    instanceType="p5en.48xlarge",
                    maxModelLen=32768,
                ),
            ]
            connectors = {"vllm": ("nixl", "lmcache", "p2pnccl"), "sglang": ("mooncake", "nixl")}[engine]
            for connector in connectors:
                pd = {"connector": connector, **_PD}
                cases.append(
                    _deployment(f"{tag}-pd-{connector}", engine=engine, **extra, **small, disaggregation=pd)
                )
            cases.append(
                _deployment(
                    f"{tag}-pd-{connectors[0]}-2node",
                    engine=engine,
                    **extra,
                    **big,
                    disaggregation={"connector": connectors[0], **_PD},
                )
            )
    sim = {
        "engine": "sim",
        "model": "tiny-test",
        "gpusPerNode": 1,
        "gpuMemory": "24Gi",
        "gpuProduct": "simulated",
    }
    cases += [
        _deployment("sim-1node", **sim),
        _deployment("sim-pd-nixl", **sim, disaggregation={"connector": "nixl", **_PD}),
    ]
    dp8 = {"model": "llama-3.1-8b-instruct", "instanceType": "p5.48xlarge", "tensorParallelSize": 1}
    cases += [
        # Data parallel under PD: NIXL's side channel listens on its port + the DP rank.
        _deployment(
            "vllm-native-pd-nixl-dp8",
            engine="vllm",
            launcher="native",
            **dp8,
            dataParallelSize=8,
            disaggregation={"connector": "nixl", **_PD},
        ),
        _deployment(
            "sglang-pd-nixl-dp8",
            engine="sglang",
            **dp8,
            dataParallelSize=8,
            disaggregation={"connector": "nixl", **_PD},
        ),
        # A ratio, pairing inside each ServingGroup, a workload, and user engine args after ours.
        _deployment(
            "vllm-ray-pd-nixl-ratio-engineargs",
            engine="vllm",
            **small,
            disaggregation={"connector": "nixl", "ratio": "1:2", "pairing": "ServingGroup"},
            workload={"promptTokens": 4096, "outputTokens": 256},
            engineArgs=["--enable-prefix-caching", "--max-num-seqs", "128"],
        ),
        _deployment(
            "sglang-pd-mooncake-ratio-engineargs",
            engine="sglang",
            **small,
            disaggregation={"connector": "mooncake", "ratio": "1:2"},
            workload={"promptTokens": 4096, "outputTokens": 256},
            engineArgs=["--max-running-requests", "128"],
        ),
    ]
    cases += [
        _deployment(
            "vllm-native-engineargs-port",
            engine="vllm",
            launcher="native",
            **small,
            engineArgs=["--port", "9000"],
        ),
        _deployment("sglang-engineargs-port", engine="sglang", **small, engineArgs=["--port", "9000"]),
        _deployment(
            "vllm-ray-pd-nixl-abbreviated-engineargs",
            engine="vllm",
            **small,
            disaggregation={"connector": "nixl", **_PD},
            engineArgs=["--kv-transfer", '{"kv_connector":"NixlConnector","kv_role":"kv_consumer"}'],
        ),
        _deployment(
            "sglang-pd-mooncake-abbreviated-engineargs",
            engine="sglang",
            **small,
            disaggregation={"connector": "mooncake", **_PD},
            engineArgs=["--disaggregation-bootstrap", "9000"],
        ),
    ]
    cases.append(
        _deployment(
            "vllm-ray-mistral-format",
            engine="vllm",
            model="mistral-large-3-675b-instruct",
            instanceType="p5en.48xlarge",
            maxNodes=2,
            maxModelLen=32768,
        )
    )
    return cases


@dataclass
class Pod:
    """One pod template's engine invocation, as the engine will see it after variable expansion."""

    case: str
    role: str
    pod: str  # entry | worker
    engine: str
    argv: list[str] | None  # None: the pod runs no engine CLI (a Ray worker joining the head)
    env: dict[str, str]
    note: str = ""
    expect_ok: bool = True  # False only for the controls that must be rejected
    # What Phalanx labels the role as (kind, protocol, bootstrap port), from role_pd; None: the checkout
    # has no PD roles to compare with.
    labelled: tuple[str | None, str | None, int | None] | None = None
    http_port: int | None = None  # the containerPort named http (probes and Services use the name)
    gpus: int | None = None  # the GPUs the pod requests: vLLM's one-node world-size check uses them
    expect_error: str = ""  # with expect_ok False: a text the engine's error must contain
    mismatch: str = ""  # set when the pod's labels or ports differ from what the engine runs with
    result: dict[str, Any] = field(default_factory=dict)


def _expand(text: str, env: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in env:
            return env[name]
        if name in SAMPLE_VALUES:
            return SAMPLE_VALUES[name]
        raise ValueError(f"unresolved variable ${name} in {text!r}")

    return _VAR.sub(value, text)


def _env(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[item["name"]] = SAMPLE_VALUES["POD_IP"]
        else:  # other downward API fields, secrets: a sample stands in
            env[item["name"]] = SAMPLE_VALUES.get(item["name"], "sample")
    return env


# The simulator's flags that vLLM also has and that must mean the same to both: the simulator's PD
# quickstarts are only faithful if these would start a real vLLM. Sim-only flags are left out.
_SIM_SHARED_FLAGS = (
    "--served-model-name",
    "--port",
    "--max-model-len",
    "--tensor-parallel-size",
    "--pipeline-parallel-size",
    "--data-parallel-size",
    "--kv-transfer-config",
)
SIM_MODEL = "sim/stand-in"


def _sim_as_vllm(args: list[str]) -> list[str]:
    shared = [SIM_MODEL]
    for flag, value in itertools.pairwise(args):
        if flag in _SIM_SHARED_FLAGS:
            shared += [flag, value]
    return shared


# The command words that start each engine, and a note for the deprecated ones.
_HEADS: tuple[tuple[list[str], str, str], ...] = (
    (["vllm", "serve"], "vllm", ""),
    (["python3", "-m", "vllm.entrypoints.openai.api_server"], "vllm", "deprecated entrypoint (vllm serve)"),
    (["python3", "-m", "sglang.launch_server"], "sglang", ""),
    (["phalanx", "sim"], "sim", ""),
)
_ENGINE_HEAD = {engine: head for head, engine, note in _HEADS if not note}


def _head(full: list[str]) -> tuple[list[str], str, str] | None:
    return next((entry for entry in _HEADS if full[: len(entry[0])] == entry[0]), None)


Argv = tuple[str | None, list[str] | None, str]  # engine, its arguments (None: none to read), note


def _engine_argvs(engine: str | None, container: dict[str, Any]) -> list[Argv]:
    """Each engine command a container runs: its argv, or every engine command of its `sh -c` script
    (both branches of a script that checks for Ray). `engine` None (a hand-written ModelServing):
    whichever engine command the container runs."""
    from phalanx.api.argv import container_commands, shell_script

    script = shell_script(container_argv(container))
    if script is None:
        return [_split(engine, container_argv(container))]
    commands = [c[1:] if c[:1] == ["exec"] else c for c in container_commands(container)]
    found = [command for command in commands if _head(command) is not None]
    if not found:
        why = "Ray worker joins the head" if "ray start" in script else "no engine command in the script"
        return [(engine, None, why)]
    without_ray = "command -v ray" in script
    argvs = []
    for command in found:
        found_engine, argv, note = _split(engine, command)
        if without_ray and "--nnodes" in command:
            note = "; ".join(filter(None, ["the branch for an image without ray", note]))
        argvs.append((found_engine, argv, note))
    return argvs


def container_argv(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def _split(engine: str | None, full: list[str]) -> Argv:
    head = _head(full)
    if engine is None:
        if head is None:
            return None, None, f"not an engine command this check reads: {shlex.join(full[:3])}"
        engine = head[1]
    elif head is None or head[1] != engine:
        raise ValueError(
            f"{engine} pod does not start with {shlex.join(_ENGINE_HEAD[engine])}: {shlex.join(full[:4])}"
        )
    assert head is not None
    rest = full[len(head[0]) :]
    if engine == "sim":
        return engine, _sim_as_vllm(rest), "the flags vLLM shares with the simulator"
    return engine, rest, head[2]


def _gpus(container: dict[str, Any]) -> int | None:
    limit = (container.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu")
    return int(limit) if limit is not None else None


def render(case: dict[str, Any]) -> list[Pod]:
    """The pods of a ModelDeployment (compiled by this checkout) or of a hand-written ModelServing."""
    resource, problems = parse_resource({k: v for k, v in case.items() if k != "_label"})
    errors = [p for p in problems if p.severity == "error"]
    if errors or resource is None:
        raise SpecError(errors)
    engine: str | None = None
    if isinstance(resource, ModelDeployment):
        serving = compile_deployment(resource).model_serving
        engine = resource.spec.engine
    else:
        serving = resource
    name = _label(case)
    pods: list[Pod] = []
    roles = serving.to_dict()["spec"]["template"]["roles"]
    for typed, role in zip(serving.spec.template.roles, roles, strict=True):
        labelled = _labelled(typed)
        for pod, key in (("entry", "entryTemplate"), ("worker", "workerTemplate")):
            template = role.get(key)
            if not template:
                continue
            container = template["spec"]["containers"][0]
            env = _env(container)
            http = next(
                (p["containerPort"] for p in container.get("ports", []) if p.get("name") == "http"), None
            )
            argvs = _engine_argvs(engine, container)
            for found, argv, note in argvs:
                expanded = None if argv is None else [_expand(arg, env) for arg in argv]
                parser = "vllm" if found in ("sim", None) else found  # the simulator speaks vLLM's flags
                where = pod if "without ray" not in note else f"{pod}, without ray"
                expected = EXPECTED_REJECTIONS.get(f"{name}/{role['name']}/{where}", "")
                pods.append(
                    Pod(
                        name,
                        role["name"],
                        where,
                        parser,
                        expanded,
                        env,
                        note,
                        expect_ok=not expected,
                        labelled=labelled,
                        http_port=http,
                        gpus=_gpus(container),
                        expect_error=expected,
                    )
                )
    return pods


def _label(case: dict[str, Any]) -> str:
    return str(case.get("_label") or case["metadata"]["name"])


def _checkout() -> Path:
    """The checkout whose `phalanx` is imported (PYTHONPATH can point at another one's src)."""
    import phalanx

    return Path(phalanx.__file__).resolve().parents[2]


def example_cases(root: Path) -> list[dict[str, Any]]:
    """Every ModelDeployment and ModelServing in the checkout's examples/, as the user would apply it."""
    cases = []
    for path in sorted(root.glob("examples/*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") in ("ModelDeployment", "ModelServing"):
                name = (document.get("metadata") or {}).get("name", "?")
                cases.append({**document, "_label": f"examples/{path.name}:{name}"})
    return cases


def _labelled(role: Any) -> tuple[str | None, str | None, int | None] | None:
    """The PD side Phalanx's controller and router take the role for (its pod labels/annotations)."""
    try:
        from phalanx.api.disaggregation import role_pd
    except ImportError:  # a checkout from before PD roles
        return None
    pd = role_pd(role)
    if pd is None:
        return (None, None, None)
    port = pd.bootstrap_port if (pd.kind, pd.protocol) == ("prefill", "sglang") else None
    return (pd.kind, pd.protocol, port)


def _engine_side(pod: Pod) -> tuple[str | None, str | None, int | None] | None:
    """The PD side the engine itself runs as, from what its parser read; None: it does not say
    (vLLM kv_both serves either side)."""
    shown = pod.result.get("shown", {})
    if pod.engine == "vllm":
        if shown.get("kv_role") == "kv_both":
            return None
        kind = {"kv_producer": "prefill", "kv_consumer": "decode"}.get(shown.get("kv_role", ""))
        return (kind, "vllm" if kind else None, None)
    kind = shown.get("pd_mode") if shown.get("pd_mode") in ("prefill", "decode") else None
    port = shown.get("pd_bootstrap_port") if kind == "prefill" else None
    return (kind, "sglang" if kind else None, port)


def _mismatch(pod: Pod) -> str:
    """How the pod's labels or declared HTTP port differ from what the engine runs with; "" if not."""
    engine = _engine_side(pod)
    if pod.labelled is not None and engine is not None and engine != pod.labelled:
        # The router pairs and dials by the labels: a wrong side or bootstrap port breaks requests,
        # or makes them fall back to decode-only in silence.
        return f"labelled (kind, protocol, bootstrap port) {pod.labelled}, engine runs as {engine}"
    port = pod.result.get("shown", {}).get("port")
    if pod.pod == "entry" and pod.http_port is not None and port != pod.http_port:
        return f"the port named http is {pod.http_port}, the engine listens on {port}"  # probes miss it
    return ""


def check_consistency(pods: list[Pod], failures: list[str]) -> None:
    for pod in pods:
        if pod.argv is None or not pod.result.get("ok"):
            continue
        pod.mismatch = _mismatch(pod)
        if pod.mismatch:
            failures.append(f"{pod.case}/{pod.role}/{pod.pod}: {pod.mismatch}")


def parse_all(engine: str, pods: list[Pod]) -> None:
    """Runs parse_<engine>.py in the engine's venv over every pod that has an argv."""
    todo = [p for p in pods if p.engine == engine and p.argv is not None]
    if not todo:
        return
    python = ENGINES_CACHE / f"{engine}-{VERSIONS[engine]}" / "bin" / "python"
    if not python.exists():
        sys.exit(f"{python} is missing: run hack/engines/install.sh {engine}")
    with tempfile.TemporaryDirectory() as tmp:
        request, answer = Path(tmp, "in.json"), Path(tmp, "out.json")
        request.write_text(json.dumps([{"argv": p.argv, "env": p.env, "gpus": p.gpus} for p in todo]))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        done = subprocess.run(
            [str(python), str(HERE / f"parse_{engine}.py"), str(request), str(answer)],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0 or not answer.exists():
            sys.exit(f"parse_{engine}.py failed ({done.returncode}):\n{done.stderr[-4000:]}")
        for pod, result in zip(todo, json.loads(answer.read_text()), strict=True):
            pod.result = result


def _installed(engine: str, packages: tuple[str, ...]) -> str:
    python = ENGINES_CACHE / f"{engine}-{VERSIONS[engine]}" / "bin" / "python"
    if not python.exists():
        return f"{engine} not installed"
    code = "import importlib.metadata as m, sys\nfor p in sys.argv[1:]:\n    print(p, m.version(p))"
    done = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, check=False)
    return ", ".join(done.stdout.split("\n")[:-1]) if done.returncode == 0 else f"{engine}: ?"


def source_line() -> str:
    """`branch B at `REV SUBJECT``: the checkout whose compiler rendered the pods."""
    source = _checkout()
    rev = subprocess.run(
        ["git", "-C", str(source), "log", "-1", "--format=%h %s"], capture_output=True, text=True, check=False
    ).stdout.strip()
    # The branch, not the path: results.md is committed and may not name a place on this machine.
    branch = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--abbrev-ref", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"branch {branch or '?'} at `{rev}`"


def _header() -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    engines = "; ".join(
        [_installed("vllm", ("vllm", "ray", "lmcache", "torch")), _installed("sglang", ("sglang", "torch"))]
    )
    return f"Run {when}; Phalanx from {source_line()}; {engines}."


def _summary(pod: Pod) -> str:
    shown = pod.result.get("shown", {})
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def _verdict(pod: Pod, failures: list[str]) -> tuple[str, str]:
    if pod.argv is None:
        return ("refused as expected" if pod.pod == "-" else "skipped"), pod.note
    ok = bool(pod.result.get("ok"))
    stage = pod.result.get("stage", "")
    if pod.mismatch:
        return "INCONSISTENT", stage
    if ok != pod.expect_ok:
        failures.append(f"{pod.case}/{pod.role}/{pod.pod}: {pod.result.get('error') or 'accepted'}")
        return ("accepted, expected a rejection" if ok else "REJECTED"), stage
    if not ok and pod.expect_error not in pod.result.get("error", ""):
        failures.append(f"{pod.case}/{pod.role}/{pod.pod}: rejected for another reason than expected")
        return "REJECTED, another reason", stage
    return ("ok" if ok else "rejected as expected"), stage


def _table(title: str, pods: list[Pod], failures: list[str], last: str) -> None:
    print(f"\n## {title}\n")
    print(f"| case | role | pod | result | stage reached | {last} |")
    print("| --- | --- | --- | --- | --- | --- |")
    for pod in pods:
        verdict, stage = _verdict(pod, failures)
        detail = _summary(pod) if pod.expect_ok else f"{pod.note}: {pod.result.get('error', '')}".lstrip(": ")
        print(f"| {pod.case} | {pod.role} | {pod.pod} | {verdict} | {stage} | {detail.replace('|', '/')} |")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="check only the cases whose name contains this")
    parser.add_argument("--json", type=Path, help="also write every pod's argv and result here")
    parser.add_argument("--argv", action="store_true", help="print each argv under the tables")
    opts = parser.parse_args()
    pods: list[Pod] = []
    failures: list[str] = []
    for case in _cases() + example_cases(_checkout()):
        name = _label(case)
        if opts.only not in name:
            continue
        try:
            pods += render(case)
        except SpecError as error:
            message = "; ".join(f"{e.field}: {e.message}" for e in error.errors)
            expected = EXPECTED_REFUSALS.get(name)
            if expected and expected in message:
                pods.append(Pod(name, "-", "-", case["spec"]["engine"], None, {}, f"compiler: {message}"))
            else:
                failures.append(f"{name}: does not compile: {message}")
    controls = [
        Pod(c.name, "-", "-", c.engine, c.argv, c.env, c.why, expect_ok=c.expect_ok, gpus=c.gpus)
        for c in CONTROLS
        if opts.only in c.name
    ]
    for engine in ("vllm", "sglang"):
        parse_all(engine, pods + controls)
    check_consistency(pods, failures)
    versions = ", ".join(f"{e} {v}" for e, v in VERSIONS.items())
    print(f"# Engine argv check ({versions})\n")
    print(_header())
    _table("Rendered by this checkout", pods, failures, "what the engine read")
    _table(
        "Controls (hand-written, known verdict)", controls, failures, "what the engine read / why rejected"
    )
    if opts.argv:
        print()
        for pod in pods:
            if pod.argv is not None:
                print(f"- {pod.case}/{pod.role}/{pod.pod}: `{shlex.join(pod.argv)}`")
    if opts.json:
        opts.json.write_text(json.dumps([pod.__dict__ for pod in pods + controls], indent=2))
    print(f"\n{len(pods)} rendered pods, {len(controls)} controls, {len(failures)} problems")
    for failure in failures:
        print(f"- {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
