#!/usr/bin/env python3
"""Import every manifest a peer project publishes and check what Phalanx makes of it.

A development check, run by hand against clones of the peers' repositories (they are not part of this
repository and CI has no copy):

    .venv/bin/python hack/compat/check_peers.py --kthena DIR --lws DIR --kaito DIR --aibrix DIR [--rev REV]

DIR is a checkout or a bare clone (files are read with `git show REV:path`, default HEAD). Every YAML
file, and every fenced yaml block of every Markdown file, is split into documents; the files holding a
resource `phalanx import` knows are imported whole. For each one it records the exit status `phalanx
import` would give (0 nothing lost, 3 something lost, 1 refused, with the reason), and compares the
pods Phalanx would create per ServingGroup with what the source system creates: the number of pods,
which of them are entry (leader/head) pods, and the gang's minMember. Kthena ModelServings are also
checked the way an exported object arrives: with the defaults of Kthena's own CRD applied (read from
the Kthena clone), `phalanx validate` must accept them with only the apiVersion changed.

Prints a Markdown report; `--details` lists every file.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml as pyyaml

from phalanx import planner
from phalanx.api import ModelDeployment, ModelServing, parse_resource
from phalanx.api.labels import GROUP_VERSION
from phalanx.api.yamlfile import parse_yaml
from phalanx.compiler import compile_deployment
from phalanx.controller.desired import group_objects
from phalanx.importers import InputError, converter_for, import_documents
from phalanx.importers.base import source_name
from phalanx.planner.memory import decoder_bytes, edge_params
from phalanx.planner.types import GiB

KTHENA_CRD = "charts/kthena/charts/workload/crds/workload.serving.volcano.sh_modelservings.yaml"
_FENCE = re.compile(r"^```ya?ml\s*\n(.*?)^```", re.S | re.M)


@dataclass
class Expected:
    """What the source system creates per group."""

    pods: int
    entries: int
    gang: int | None  # minMember of the group's PodGroup; None: no gang object


@dataclass
class Verdict:
    path: str
    source: str
    status: int  # 0, 3 or 1
    reason: str = ""
    lost: list[str] = field(default_factory=list)
    mismatch: str = ""


# ---- reading a peer repository ----------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def files(repo: Path, rev: str) -> Iterator[tuple[str, str]]:
    for path in _git(repo, "ls-tree", "-r", "--name-only", rev).splitlines():
        if path.endswith((".yaml", ".yml", ".md")):
            try:
                yield path, _git(repo, "show", f"{rev}:{path}")
            except subprocess.CalledProcessError:  # LFS pointers and the like
                continue


def yaml_texts(path: str, text: str) -> Iterator[str]:
    if path.endswith(".md"):
        yield from (match.group(1) for match in _FENCE.finditer(text))
    else:
        yield text


def documents(text: str) -> list[Any] | None:
    """The manifests of a YAML text: objects with an apiVersion, a kind and metadata; None when the text
    is not YAML (a Helm template, a fragment with placeholders)."""
    try:
        parsed = [document.data for document in parse_yaml(text)]
    except Exception:
        return None
    return [
        d
        for d in parsed
        if isinstance(d, Mapping)
        and isinstance(d.get("apiVersion"), str)
        and isinstance(d.get("kind"), str)
        and isinstance(d.get("metadata"), Mapping)
    ]


# ---- the source systems' own arithmetic ---------------------------------------------------------------


def kthena_expected(spec: Mapping[str, Any], scheduler: str) -> Expected:
    roles = spec["template"]["roles"]
    minimums = (
        (spec["template"].get("gangPolicy") or spec["template"].get("gangSchedule") or {}).get(
            "minRoleReplicas"
        )
    ) or {}
    pods = entries = gang = 0
    for role in roles:
        replicas = role.get("replicas", 1)
        size = 1 + role.get("workerReplicas", 0)
        pods += replicas * size
        entries += replicas
        gang += min(minimums.get(role["name"], replicas), replicas) * size
    return Expected(pods, entries, gang if scheduler == "volcano" else None)


def lws_expected(spec: Mapping[str, Any]) -> Expected:
    lwt = spec["leaderWorkerTemplate"]
    size = lwt.get("size", 1)
    templates = [lwt.get("leaderTemplate") or {}, lwt.get("workerTemplate") or {}]
    volcano = any((t.get("spec") or {}).get("schedulerName") == "volcano" for t in templates)
    return Expected(size, 1, size if volcano else None)


def kaito_nodes(model: str, instance: str, max_model_len: int | None) -> int:
    """KAITO's node estimator (v0.12): weights x 1.02 at 0.84 utilisation, 2.3 GiB reserve plus the KV
    cache of one max-model-len sequence (2048 when unset) per GPU, 5% overhead."""
    arch = planner.get_model(model)
    shape = planner.shape_for_instance(instance)
    weights = decoder_bytes(arch, arch.native_dtype) + edge_params(arch, 1) * 2 + arch.extra_params * 2
    size_gib = float(weights) / GiB  # the checkpoint's size, which KAITO's catalog records
    if arch.mla is not None:
        per_token = 2 * arch.num_layers * (arch.mla.kv_lora_rank + arch.mla.qk_rope_head_dim)
    else:
        per_token = 2 * arch.num_layers * 2 * arch.num_kv_heads * arch.head_dim
    per_gpu = shape.gpu_memory_bytes / GiB
    reserve = 2.3 + (max_model_len or 2048) * per_token / shape.gpus_per_node / GiB
    usable = (per_gpu * 0.84 - reserve) / 1.05
    if usable <= 0:
        return -1
    return math.ceil((int(size_gib * 1.02 / usable) + 1) / shape.gpus_per_node)


def ray_expected(obj: Mapping[str, Any]) -> Expected:
    """KubeRay: one head plus, per worker group, replicas (clamped to min/max) x numOfHosts workers; a
    PodGroup of all of them only with the Volcano batch scheduler label."""
    spec = obj.get("spec") or {}
    cluster = (spec.get("template") or {}).get("spec") or {} if obj.get("kind") != "RayCluster" else spec
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    labels = {**labels, **((obj.get("metadata") or {}).get("labels") or {})}
    pods = 1
    for group in cluster.get("workerGroupSpecs") or []:
        replicas = group.get("replicas", group.get("minReplicas", 0)) or 0
        replicas = max(group.get("minReplicas", 0) or 0, min(replicas, group.get("maxReplicas", replicas)))
        pods += replicas * (group.get("numOfHosts", 1) or 1)
    return Expected(pods, 1, pods if labels.get("ray.io/scheduler-name") == "volcano" else None)


# ---- checking one file ---------------------------------------------------------------------------------


def _observed(ms: ModelServing) -> Expected:
    objects = group_objects(ms, 0)
    pods = [o for o in objects if o["kind"] == "Pod"]
    gangs = [o for o in objects if o["kind"] == "PodGroup"]
    entries = sum(1 for p in pods if p["metadata"]["name"].endswith("-0"))
    return Expected(len(pods), entries, gangs[0]["spec"]["minMember"] if gangs else None)


def _compare(what: Expected, seen: Expected) -> str:
    if (what.pods, what.entries, what.gang) == (seen.pods, seen.entries, seen.gang):
        return ""
    return (
        f"source: {what.pods} pods, {what.entries} entry, gang {what.gang}; "
        f"phalanx: {seen.pods} pods, {seen.entries} entry, gang {seen.gang}"
    )


def check_file(path: str, docs: list[Any]) -> list[Verdict]:
    sources = [d for d in docs if isinstance(d, Mapping) and converter_for(d) is not None]
    if not sources:
        return []
    names = ", ".join(source_name(d) for d in sources)
    try:
        result = import_documents(docs)
    except InputError as exc:
        return [Verdict(path, names, 1, "; ".join(p.render() for p in exc.problems))]
    verdicts = []
    for item in result.converted:
        source = docs[item.document]
        verdict = Verdict(path, item.source, 3 if item.lost else 0)
        verdict.lost = [note.text for note in item.notes if note.lost]
        assert item.obj is not None
        resource, problems = parse_resource(item.obj)
        errors = [p.render() for p in problems if p.severity == "error"]
        if resource is None or errors:
            verdict.status, verdict.reason = 1, "; ".join(errors)
            verdicts.append(verdict)
            continue
        expected: Expected | None = None
        if isinstance(resource, ModelDeployment):
            try:
                ms = compile_deployment(resource).model_serving
            except Exception as exc:
                verdict.status, verdict.reason = 1, str(exc)
                verdicts.append(verdict)
                continue
            if resource.spec.instance_type:
                spec_ = resource.spec
                nodes = kaito_nodes(spec_.model.name, spec_.instance_type, spec_.max_model_len)
                expected = Expected(nodes, 1, None)
        else:
            ms = resource
            kind, spec = source["kind"], source.get("spec") or {}
            if kind in ("ModelServing", "ModelInfer"):
                expected = kthena_expected(spec, spec.get("schedulerName", "volcano"))
            elif kind == "LeaderWorkerSet":
                expected = lws_expected(spec)
            elif kind == "Workspace":  # a custom template: one pod
                expected = Expected(1, 1, None)
            elif kind in ("RayClusterFleet", "RayClusterReplicaSet", "RayCluster"):
                expected = ray_expected(source)
        if expected is not None:
            verdict.mismatch = _compare(expected, _observed(ms))
        verdicts.append(verdict)
    return verdicts


# ---- Kthena's CRD defaults: what an exported object carries --------------------------------------------


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """Structural defaulting as the API server does it: missing properties with a default get it,
    recursively into objects and arrays that are present."""
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = pyyaml.safe_load(pyyaml.safe_dump(sub["default"]))
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key in value:
                value[key] = apply_defaults(value[key], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def exported_verdict(path: str, obj: Mapping[str, Any], schema: Mapping[str, Any]) -> Verdict:
    data = apply_defaults(pyyaml.safe_load(pyyaml.safe_dump(dict(obj))), schema)
    data["apiVersion"] = GROUP_VERSION
    data.setdefault("metadata", {}).setdefault("namespace", "default")
    _, problems = parse_resource(data)
    errors = [p.render() for p in problems if p.severity == "error"]
    name = f"ModelServing/{data['metadata'].get('name')}"
    return Verdict(path, name, 1 if errors else 0, "; ".join(errors))


# ---- report --------------------------------------------------------------------------------------------


def check_repo(
    repo: Path, rev: str, schema: Mapping[str, Any] | None
) -> tuple[list[Verdict], list[Verdict], int]:
    seen: set[str] = set()
    verdicts: list[Verdict] = []
    exported: list[Verdict] = []
    duplicates = 0
    for path, text in files(repo, rev):
        for block in yaml_texts(path, text):
            digest = hashlib.sha256(block.encode()).hexdigest()
            if digest in seen:
                duplicates += 1
                continue
            seen.add(digest)
            docs = documents(block)
            if not docs:
                continue
            verdicts += check_file(path, docs)
            if schema is not None:
                for obj in docs:
                    if isinstance(obj, Mapping) and obj.get("kind") == "ModelServing" and converter_for(obj):
                        exported.append(exported_verdict(path, obj, schema))
    return verdicts, exported, duplicates


def summary(name: str, verdicts: list[Verdict]) -> str:
    counts = Counter(v.status for v in verdicts)
    same = sum(1 for v in verdicts if v.status != 1 and not v.mismatch)
    return (
        f"| {name} | {len(verdicts)} | {counts[0]} | {counts[3]} | {counts[1]} | "
        f"{same} | {sum(1 for v in verdicts if v.mismatch)} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for peer in ("kthena", "lws", "kaito", "aibrix"):
        parser.add_argument(f"--{peer}", type=Path, help=f"a clone of {peer}'s repository")
    parser.add_argument("--rev", default="HEAD", help="the revision to read (default HEAD)")
    parser.add_argument("--details", action="store_true", help="list every file's verdict")
    args = parser.parse_args(argv)
    print("| peer | resources | exit 0 | exit 3 | exit 1 | same pods/entries/gang | differ |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    details: list[str] = []
    for peer in ("kthena", "lws", "kaito", "aibrix"):
        repo = getattr(args, peer)
        if repo is None:
            continue
        schema = None
        if peer == "kthena":
            crd = pyyaml.safe_load(_git(repo, "show", f"{args.rev}:{KTHENA_CRD}"))
            schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        verdicts, exported, duplicates = check_repo(repo, args.rev, schema)
        print(summary(peer, verdicts))
        if exported:
            accepted = sum(1 for v in exported if v.status == 0)
            details.append(
                f"{peer}: {len(exported)} ModelServings with Kthena's CRD defaults applied: "
                f"{accepted} validate unchanged, {len(exported) - accepted} refused"
            )
            details += [f"  refused {v.path} {v.source}: {v.reason}" for v in exported if v.status]
        details.append(f"{peer}: {duplicates} duplicate YAML blocks skipped")
        for v in verdicts:
            if args.details or v.status == 1 or v.mismatch:
                line = f"  [{v.status}] {v.path} {v.source}"
                line += f": {v.reason}" if v.reason else ""
                line += f" MISMATCH {v.mismatch}" if v.mismatch else ""
                details.append(line)
            if args.details:
                details += [f"      lost: {text}" for text in v.lost]
    print()
    print("\n".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
