"""Random specs never crash validation or render: they are either accepted or get FieldErrors."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.api import FieldError, ModelServing, load_text, parse_resource
from phalanx.api.yamlfile import dump_yaml
from phalanx.controller.desired import steady_state

# Mostly valid names (so specs get as far as render), sometimes anything.
names = st.one_of(
    st.from_regex(r"[a-z][a-z0-9]{0,12}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9]{0,12}", fullmatch=True),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_A", min_size=0, max_size=70),
)
int_or_percent = st.one_of(
    st.integers(min_value=-3, max_value=12),
    st.sampled_from(["0%", "25%", "50%", "100%", "150%", "x", "", "7"]),
    st.none(),
    st.booleans(),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5))


def container() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "name": st.sampled_from(["engine", "c"]),
            "image": st.one_of(st.just("img:1"), st.just("img:2"), scalars),
        },
        optional={
            "ports": st.lists(
                st.fixed_dictionaries({"containerPort": st.one_of(st.integers(1, 9000), scalars)}), max_size=2
            ),
            "resources": st.fixed_dictionaries(
                {},
                optional={
                    "limits": st.dictionaries(
                        st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]),
                        st.one_of(st.sampled_from(["1", "8", "16Gi", "500m", "lots"]), st.integers(0, 8)),
                        max_size=3,
                    ),
                    "requests": st.dictionaries(
                        st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]),
                        st.sampled_from(["1", "2", "8Gi", "250m"]),
                        max_size=3,
                    ),
                },
            ),
            "env": st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["A", "ENTRY_ADDRESS"]), "value": st.just("v")}
                ),
                max_size=2,
            ),
        },
    )


def pod_template() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.fixed_dictionaries(
            {"spec": st.fixed_dictionaries({"containers": st.lists(container(), min_size=1, max_size=2)})},
            optional={
                "metadata": st.fixed_dictionaries(
                    {}, optional={"labels": st.dictionaries(names, names, max_size=2)}
                )
            },
        ),
        scalars,
    )


small_counts = st.one_of(st.integers(0, 3), st.integers(0, 3), st.integers(-1, 4), scalars)
roles = st.lists(
    st.fixed_dictionaries(
        {"name": names, "entryTemplate": pod_template()},
        optional={
            "replicas": small_counts,
            "workerReplicas": small_counts,
            "workerTemplate": pod_template(),
            "partition": int_or_percent,
            "maxUnavailable": int_or_percent,
        },
    ),
    min_size=1,
    max_size=3,
)

specs = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(
            ["serving.phalanx.dev/v1alpha1", "workload.serving.volcano.sh/v1alpha1"]
        ),
        "kind": st.sampled_from(["ModelServing", "ModelServing", "ModelDeployment", "Pod"]),
        "metadata": st.fixed_dictionaries(
            {"name": names},
            optional={
                "annotations": st.dictionaries(
                    st.sampled_from(
                        ["serving.phalanx.dev/gang-scheduler", "scheduling.volcano.sh/queue-name"]
                    ),
                    st.sampled_from(["volcano", "coscheduling", "none", "q", ""]),
                )
            },
        ),
        "spec": st.fixed_dictionaries(
            {
                "template": st.fixed_dictionaries(
                    {"roles": roles},
                    optional={
                        "gangPolicy": st.fixed_dictionaries(
                            {"minRoleReplicas": st.dictionaries(names, st.integers(-1, 5), max_size=2)}
                        )
                    },
                )
            },
            optional={
                "replicas": small_counts,
                "schedulerName": st.sampled_from(
                    ["volcano", "default-scheduler", "scheduler-plugins-scheduler"]
                ),
                "recoveryPolicy": st.sampled_from(["ServingGroupRecreate", "RoleRecreate", "None", "x"]),
                "rolloutStrategy": st.fixed_dictionaries(
                    {},
                    optional={
                        "type": st.sampled_from(["ServingGroupRollingUpdate", "RoleRollingUpdate", "x"]),
                        "rollingUpdateConfiguration": st.fixed_dictionaries(
                            {},
                            optional={
                                "maxUnavailable": int_or_percent,
                                "maxSurge": int_or_percent,
                                "partition": int_or_percent,
                            },
                        ),
                    },
                ),
            },
        ),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_random_specs_validate_and_render_without_crashing(data: dict[str, Any]) -> None:
    resource, problems = parse_resource(data)
    assert all(isinstance(p, FieldError) and p.message for p in problems)
    errors = [p for p in problems if p.severity == "error"]
    if isinstance(resource, ModelServing) and not errors:
        objects = steady_state(resource)
        assert len([o for o in objects if o["kind"] == "Pod"]) == resource.spec.replicas * sum(
            role.replicas * role.group_size for role in resource.spec.template.roles
        )
        # Whatever we render reads back as YAML.
        assert dump_yaml(objects) or not objects


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_crashes_the_loader(text: str) -> None:
    loaded = load_text(text, "random.yaml")
    assert loaded.resources or loaded.problems
