"""Dev-time check, run by hand where Kthena's repository is at hand (CI has no copy of it):

    .venv/bin/python -m tests.unit.api.check_kthena_repo /path/to/kthena   # a checkout or a bare clone

1. The defaults in `kthena.KTHENA_DEFAULTS` are exactly those of Kthena's ModelServing CRD.
2. Every ModelServing manifest in the repository (YAML files, and YAML blocks in Markdown) is validated
   as written and after a round trip through Kthena's API server (`kthena.round_trip`), each with only
   its apiVersion changed. It prints the counts and every error, grouped by message.
3. For every manifest with a role named prefill or decode (or one the engine flags make one), the
   PD kind and protocol each role gets (`role_pd`).
Exit status 1 when the defaults differ or a round trip turns a valid manifest invalid.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from phalanx.api.disaggregation import role_pd
from phalanx.api.errors import SpecError, only_errors
from phalanx.api.load import parse_resource
from phalanx.api.modelserving import ModelServing
from phalanx.api.yamlfile import parse_yaml
from tests.unit.api.kthena import KTHENA_DEFAULTS, as_phalanx, round_trip

CRD = "charts/kthena/charts/workload/crds/workload.serving.volcano.sh_modelservings.yaml"
_FENCE = re.compile(r"^```ya?ml[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def _crd_defaults(schema: dict[str, Any], path: tuple[str, ...] = ()) -> set[tuple[tuple[str, ...], str]]:
    found: set[tuple[tuple[str, ...], str]] = set()
    if "default" in schema and path:
        found.add((path, repr(schema["default"])))
    for name, child in (schema.get("properties") or {}).items():
        found |= _crd_defaults(child, (*path, name))
    if isinstance(schema.get("items"), dict):
        found |= _crd_defaults(schema["items"], (*path, "*"))
    return found


def check_defaults(repo: Path) -> bool:
    (crd,) = [d.data for d in parse_yaml(_git(repo, "show", f"HEAD:{CRD}"))]
    (version,) = crd["spec"]["versions"]
    theirs = _crd_defaults(version["schema"]["openAPIV3Schema"])
    ours = {(path, repr(value)) for path, value in KTHENA_DEFAULTS}
    for label, extra in (("in Kthena's CRD only", theirs - ours), ("in kthena.py only", ours - theirs)):
        for path, value in sorted(extra):
            print(f"default {label}: {'.'.join(path)} = {value}")
    print(f"defaults: {len(theirs)} in Kthena's CRD, {len(ours)} in kthena.py, equal: {theirs == ours}")
    return theirs == ours


def manifests(repo: Path) -> list[tuple[str, str]]:
    """(where, YAML text) of every YAML file and Markdown YAML block that mentions a ModelServing."""
    out: list[tuple[str, str]] = []
    for name in _git(repo, "grep", "-l", "kind: ModelServing", "HEAD").split():
        path = name.removeprefix("HEAD:")
        if path == CRD or not path.endswith((".yaml", ".yml", ".md")):
            continue
        text = _git(repo, "show", f"HEAD:{path}")
        if path.endswith(".md"):
            blocks = [m.group(1) for m in _FENCE.finditer(text) if "kind: ModelServing" in m.group(1)]
            out += [(f"{path} (block {i + 1})", block) for i, block in enumerate(blocks)]
        else:
            out.append((path, text))
    return out


def _errors(data: dict[str, Any]) -> list[str]:
    _, problems = parse_resource(data)
    return [f"{p.field}: {p.message}" for p in only_errors(problems)]


def _pd_kinds(where: str, data: dict[str, Any], counts: Counter[str]) -> None:
    ms, _ = parse_resource(as_phalanx(data))
    if not isinstance(ms, ModelServing):
        return
    kinds = {role.name: role_pd(role) for role in ms.spec.template.roles}
    if not any(pd is not None or name.startswith(("prefill", "decode")) for name, pd in kinds.items()):
        return
    counts["PD-looking manifests"] += 1
    counts["  ... whose every prefill/decode role gets its kind"] += all(
        pd is not None for name, pd in kinds.items() if name.startswith(("prefill", "decode"))
    )
    shown = ", ".join(
        f"{name}: {pd.kind + '/' + pd.protocol if pd else 'aggregated'}" for name, pd in kinds.items()
    )
    print(f"  PD {where}: {shown}")


def check_manifests(repo: Path) -> bool:
    counts: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    broken_by_round_trip = []
    for where, text in manifests(repo):
        try:
            documents = parse_yaml(text, where)
        except SpecError:
            counts["not YAML (templates, elided blocks)"] += 1
            continue
        for document in documents:
            data = document.data
            if not (isinstance(data, dict) and data.get("kind") == "ModelServing"):
                continue
            if not str(data.get("apiVersion", "")).startswith("workload.serving.volcano.sh/"):
                continue
            counts["ModelServing manifests"] += 1
            _pd_kinds(where, data, counts)
            as_written = _errors(as_phalanx(data))
            exported = _errors(as_phalanx(round_trip(data)))
            counts["valid as written"] += not as_written
            counts["valid after a round trip through Kthena"] += not exported
            if exported and not as_written:
                broken_by_round_trip.append(where)
            for message in exported:
                messages[re.sub(r"\[\d+\]", "[i]", message)] += 1
                print(f"  {where}: {message}")
    for key, value in counts.items():
        print(f"{key}: {value}")
    for message, count in messages.most_common():
        print(f"{count:4d} x {message}")
    for where in broken_by_round_trip:
        print(f"valid as written, invalid after the round trip: {where}")
    return not broken_by_round_trip


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    repo = Path(argv[1])
    defaults_ok = check_defaults(repo)
    manifests_ok = check_manifests(repo)
    return 0 if defaults_ok and manifests_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
