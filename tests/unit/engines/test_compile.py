"""ModelDeployment problems all at once, each on its field and line: validation, catalogs, config.json, plan.

Files are read the way `phalanx validate`, `render` and `up` read them: with `check=deployment_problems`.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from phalanx.api import FieldError, ModelDeployment, SpecError, load_text, parse_resource
from phalanx.compiler import compile_deployment, deployment_problems

CONFIGS = Path(__file__).parents[1] / "planner" / "configs"


def spec(*lines: str) -> str:
    """A ModelDeployment file whose spec is `lines`: the first of them is line 6 of the file."""
    header = "apiVersion: serving.phalanx.dev/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: m\nspec:\n"
    return header + "".join(f"  {line}\n" for line in lines)


def load(text: str) -> list[FieldError]:
    return load_text(text, "md.yaml", check=deployment_problems).problems


def errors(text: str) -> dict[str, FieldError]:
    return {p.field: p for p in load(text) if p.severity == "error"}


def deployment(**spec: Any) -> ModelDeployment:
    data = {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m"},
        "spec": spec,
    }
    loaded = load_text(yaml.safe_dump(data), "md.yaml")
    (md,) = loaded.resources
    assert isinstance(md, ModelDeployment)
    return md


def test_catalog_problems_come_together_with_their_lines() -> None:
    found = errors(spec("model: llama-3.3-70b", "instanceType: p5.48xlarg"))
    assert set(found) == {"spec.model.name", "spec.instanceType"}
    # `model: name` is shorthand for `model: {name: ...}`: the error sits on the line that names it
    assert (found["spec.model.name"].line, found["spec.instanceType"].line) == (6, 7)
    assert "llama-3.3-70b-instruct" in found["spec.model.name"].fix
    assert (
        found["spec.instanceType"]
        .render("md.yaml")
        .startswith(
            "md.yaml:7:3: error: spec.instanceType: is not in the instance catalog (got 'p5.48xlarg')"
        )
    )


def test_schema_errors_and_planning_errors_come_together() -> None:
    found = errors(spec("model: no-such-model", "instanceType: p5.48xlarge", "replicas: -1"))
    assert set(found) == {"spec.replicas", "spec.model.name"}
    assert found["spec.replicas"].line == 8


def test_a_plan_that_does_not_fit_points_at_the_pinned_field_in_spec_words() -> None:
    found = errors(spec("model: llama-3.1-405b-instruct", "instanceType: p5.48xlarge", "nodes: 1"))
    (error,) = found.values()
    assert (error.field, error.line, error.column) == ("spec.nodes", 8, 3)
    assert "does not fit on 1 node" in error.message
    assert "gpuMemoryUtilization" in error.message and "max_model_len" not in error.message
    assert "pin 2 nodes" in error.fix


def test_a_plan_that_does_not_fit_unpinned_points_at_the_shape() -> None:
    found = errors(spec("model: llama-3.1-405b-instruct", "gpusPerNode: 1", "gpuMemory: 24Gi", "maxNodes: 2"))
    (error,) = found.values()
    assert (error.field, error.line) == ("spec.gpusPerNode", 7)
    assert "allow up to" in error.fix or "lower maxModelLen" in error.fix


def test_the_validation_and_the_compiler_do_not_repeat_each_other() -> None:
    problems = load(spec("model: tiny-test", "gpusPerNode: 1"))
    assert [(p.field, p.message) for p in problems] == [("spec.gpuMemory", "is required with gpusPerNode")]


CONFIG_DEPLOYMENT = """\
apiVersion: serving.phalanx.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: llama
spec:
  model:
    name: acme/llama-8b
    config:
{config}
  instanceType: Standard_NC96ads_A100_v4
"""


def with_config(config: dict[str, Any]) -> str:
    body = textwrap.indent(json.dumps(config, indent=2), " " * 6)
    return CONFIG_DEPLOYMENT.format(config=body)


def test_a_model_deployment_carries_the_models_config_json_as_written() -> None:
    config = json.loads((CONFIGS / "llama-3.1-8b.json").read_text())
    loaded = load_text(with_config(config), "md.yaml", check=deployment_problems)
    assert loaded.problems == []
    (md,) = loaded.resources
    assert isinstance(md, ModelDeployment)
    compiled = compile_deployment(md)
    assert compiled.plan.hf_id == "acme/llama-8b"
    assert compiled.plan.memory.weights == 8_030_261_248 * 2  # one replica per GPU: all of it
    assert compiled.plan.data_parallel_size == 4
    entry = compiled.model_serving.spec.template.roles[0].entry_template.spec["containers"][0]
    assert entry["args"][entry["args"].index("--data-parallel-size") + 1] == "4"


def test_config_problems_point_at_the_key_inside_the_spec() -> None:
    config = json.loads((CONFIGS / "llama-3.1-8b.json").read_text())
    config["num_hidden_layers"] = "32"
    del config["vocab_size"]
    text = with_config(config)
    found = errors(text)
    assert set(found) == {"spec.model.config.num_hidden_layers", "spec.model.config.vocab_size"}
    layers = found["spec.model.config.num_hidden_layers"]
    assert text.splitlines()[layers.line - 1].strip().startswith('"num_hidden_layers"')
    assert layers.value == "32"
    assert found["spec.model.config.vocab_size"].line == 8  # missing: reported at `config:` itself


def test_config_and_architecture_together_are_refused() -> None:
    text = yaml.safe_dump(
        {
            "apiVersion": "serving.phalanx.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "m"},
            "spec": {
                "model": {
                    "name": "acme/x",
                    "config": json.loads((CONFIGS / "phi-4.json").read_text()),
                    "architecture": {
                        "numHiddenLayers": 1,
                        "hiddenSize": 8,
                        "numAttentionHeads": 1,
                        "numKeyValueHeads": 1,
                        "intermediateSize": 8,
                        "vocabSize": 8,
                        "numParameters": 8,
                        "maxPositionEmbeddings": 8,
                    },
                },
                "instanceType": "p5.48xlarge",
            },
        }
    )
    found = {p.field: p for p in load_text(text, "md.yaml", check=deployment_problems).errors}
    assert set(found) == {"spec.model.architecture"}
    assert found["spec.model.architecture"].message == "cannot be combined with config"


def test_pinned_layout_reaches_the_plan_and_a_wrong_pin_is_named() -> None:
    pinned = compile_deployment(
        deployment(model="llama-3.1-8b-instruct", instanceType="p5.48xlarge", dataParallelSize=1)
    )
    assert (pinned.plan.data_parallel_size, pinned.plan.tensor_parallel_size) == (1, 8)
    both = compile_deployment(
        deployment(
            model="llama-3.1-8b-instruct",
            instanceType="p5.48xlarge",
            tensorParallelSize=2,
            dataParallelSize=4,
        )
    )
    assert (both.plan.data_parallel_size, both.plan.tensor_parallel_size) == (4, 2)
    with pytest.raises(SpecError) as caught:
        compile_deployment(
            deployment(model="llama-3.1-8b-instruct", instanceType="p5.48xlarge", dataParallelSize=3)
        )
    (error,) = caught.value.errors
    assert error.field == "spec.dataParallelSize"
    assert error.message == "dataParallelSize 3 does not divide the 8 GPUs of a node"
    with pytest.raises(SpecError) as caught:
        compile_deployment(
            deployment(
                model="llama-3.1-405b-instruct", instanceType="p5.48xlarge", nodes=2, dataParallelSize=2
            )
        )
    assert caught.value.errors[0].field == "spec.dataParallelSize"


def test_compile_raises_every_error_at_once() -> None:
    md = deployment(model="no-such-model", instanceType="no-such-instance")
    with pytest.raises(SpecError) as caught:
        compile_deployment(md)
    assert [e.field for e in caught.value.errors] == ["spec.model.name", "spec.instanceType"]


def test_plan_warnings_are_problems_of_the_file() -> None:
    problems = load(spec("model: llama-3.1-405b-instruct", "instanceType: p5.48xlarge", "maxNodes: 4"))
    assert [(p.severity, p.message) for p in problems] == [
        ("warning", "uses 2 of at most 4 nodes: 2 already fit")
    ]


def test_sglang_deployments_get_sglangs_memory_fraction_and_kv_figures() -> None:
    def compiled(**spec: Any) -> Any:
        md, _ = parse_resource(
            {
                "apiVersion": "serving.phalanx.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "m"},
                "spec": {"model": "llama-3.1-8b-instruct", "engine": "sglang", "maxModelLen": 8192, **spec},
            }
        )
        assert isinstance(md, ModelDeployment)
        return compile_deployment(md)

    def fraction(result: Any) -> str:
        args: list[str] = result.model_serving.spec.template.roles[0].entry_template.spec["containers"][0][
            "args"
        ]
        return args[args.index("--mem-fraction-static") + 1]

    h100 = {"gpusPerNode": 1, "gpuMemory": "80Gi", "gpuProduct": "H100-80GB"}
    # SGLang 0.5.23 keeps 13904 MiB of an 80 GiB GPU for its runtime at TP 1: 0.83, not the 0.9 vLLM uses.
    assert fraction(compiled(**h100)) == "0.83"
    assert compiled(**h100).plan.memory.runtime_overhead == 0  # outside SGLang's fraction
    assert fraction(compiled(**h100, gpuMemoryUtilization=0.75)) == "0.75"
