"""The `phalanx` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from phalanx import __version__, planner
from phalanx.api import (
    FieldError,
    Loaded,
    ModelDeployment,
    ModelServing,
    SpecError,
    load_text,
    parse_resource,
)
from phalanx.api.labels import GROUP_VERSION
from phalanx.api.yamlfile import MAX_FILE_BYTES, check_file_size, decode_text, dump_yaml, parse_yaml
from phalanx.compiler import compile_deployment, deployment_problems
from phalanx.compiler.model_config import config_file, read_model_config
from phalanx.controller.desired import steady_state
from phalanx.planner.types import GpuShape, ModelArchitecture, Plan, PlanningError, PlanRequest
from phalanx.planner.wording import FIELD_NAMES, reword

app = typer.Typer(
    name="phalanx",
    help="Serve large language models that span several machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Options of `phalanx` itself; the help text is the Typer app's."""


# Help texts are rich markup: a default that is not a literal value goes in `show_default`,
# never as "[default: ...]" inside the help, where the markup renderer would swallow it.
FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="A YAML file with ModelServing/ModelDeployment.")
]
OutputFormat = Literal["yaml", "json"]
PIPE_WIDTH = 200  # columns of tables printed to a pipe; a table takes only what it needs
# Where lightkube looks when no --kubeconfig is given, in its order.
KUBECONFIG_ORDER = "in a pod its service account, else $KUBECONFIG, else ~/.kube/config"


def _read(path: Path) -> Loaded:
    """The file's resources and every problem, a ModelDeployment's planning problems included."""
    source = "<stdin>" if str(path) == "-" else str(path)
    return load_text(loaded_text(path), source, check=deployment_problems)


def _report(problems: list[FieldError], source: str | None) -> None:
    for problem in problems:
        colour = "red" if problem.severity == "error" else "yellow"
        err.print(f"[{colour}]{problem.render(source)}[/{colour}]", markup=True, highlight=False)


def _load_or_exit(path: Path) -> Loaded:
    loaded = _read(path)
    _report(loaded.problems, loaded.source)
    if loaded.errors:
        count = len(loaded.errors)
        err.print(f"{loaded.source}: {count} error{'s' if count != 1 else ''}")
        raise typer.Exit(1)
    return loaded


@app.command()
def validate(file: FileOption) -> None:
    """Check a spec; print every problem with its line, field, value and fix. Exit 1 on errors."""
    loaded = _load_or_exit(file)
    names = ", ".join(f"{r.kind}/{r.metadata.name}" for r in [*loaded.resources, *loaded.policies])
    err.print(f"{loaded.source}: valid ({names})")


def _render_objects(
    resource: ModelServing | ModelDeployment, source: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    if isinstance(resource, ModelServing):
        return steady_state(resource), []
    try:
        compiled = compile_deployment(resource)  # its problems were reported when the file was read
    except SpecError as exc:
        _report(list(exc.errors), source)
        raise typer.Exit(1) from None
    comments = [f"ModelDeployment/{resource.name} planned as:"] + [
        f"  {line}" for line in compiled.plan.arithmetic
    ]
    ms = compiled.model_serving
    policy = [compiled.autoscaling_policy.to_dict()] if compiled.autoscaling_policy is not None else []
    return [ms.to_dict(), *steady_state(ms), *policy], comments


@app.command()
def render(
    file: FileOption,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format.")] = "yaml",
) -> None:
    """Print the Kubernetes objects a spec becomes (a ModelDeployment also shows its plan)."""
    loaded = _load_or_exit(file)
    objects: list[dict[str, Any]] = []
    comments: list[str] = []
    for resource in loaded.resources:
        rendered, notes = _render_objects(resource, loaded.source)
        objects += rendered
        comments += notes
    objects += [policy.to_dict() for policy in loaded.policies]
    if output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
        return
    for line in comments:
        print(f"# {line}")
    print(dump_yaml(objects), end="")


def _shape(
    instance_type: str | None, gpus_per_node: int | None, gpu_memory: str | None, gpu_product: str | None
) -> GpuShape:
    if instance_type:
        if planner.find_instance_type(instance_type) is None:
            close = planner.suggest_instance_types(instance_type)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            err.print(f"[red]error:[/red] unknown instance type {instance_type!r}.{hint}")
            raise typer.Exit(1)
        return planner.shape_for_instance(instance_type)
    if gpus_per_node is None or gpu_memory is None:
        err.print("[red]error:[/red] give --instance-type, or --gpus-per-node with --gpu-memory")
        raise typer.Exit(1)
    try:
        return planner.shape_from_memory(gpus_per_node, gpu_memory, gpu_product or "custom")
    except ValueError as exc:
        err.print(f"[red]error:[/red] --gpu-memory: {exc}")
        raise typer.Exit(1) from None


# The planner's request fields, as `phalanx plan` spells them.
PLAN_FLAGS = {name: "--" + name.replace("_", "-") for name in FIELD_NAMES}


def _model_from_config(path: Path, name: str | None) -> ModelArchitecture:
    """The architecture in a config.json (or a model directory holding one); every problem printed."""
    file = config_file(path)
    read = read_model_config(loaded_text(file), file, name)
    _report(read.problems, str(file))
    if read.model is None:
        count = len([p for p in read.problems if p.severity == "error"])
        err.print(f"{file}: {count} error{'s' if count != 1 else ''}")
        raise typer.Exit(1)
    return read.model


def _catalog_model(model: str | None) -> ModelArchitecture:
    if model is None:
        err.print("[red]error:[/red] give --model (see --list) or --model-config")
        raise typer.Exit(1)
    architecture = planner.find_model(model)
    if architecture is None:
        close = planner.suggest_models(model)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        err.print(
            f"[red]error:[/red] unknown model {model!r}.{hint} (see --list, or plan it with --model-config)"
        )
        raise typer.Exit(1)
    return architecture


def _print_plan(result: Plan) -> None:
    table = Table(title=f"{result.model} on {result.instance_type or result.gpu_product}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in planner.plan_to_dict(result).items():
        if key in ("arithmetic", "warnings", "memory", "throughput", "layouts"):
            continue
        table.add_row(key, str(value))
    out.print(table)
    for line in result.arithmetic:
        out.print(f"  {line}", markup=False)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(reword(warning, PLAN_FLAGS))}")


@app.command()
def plan(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Catalog name, Hugging Face id or KAITO preset name; with --model-config, the model's name.",
        ),
    ] = None,
    model_config: Annotated[
        Path | None,
        typer.Option(
            "--model-config",
            help="Plan a model from its Hugging Face config.json (a file, or a directory holding one).",
        ),
    ] = None,
    instance_type: Annotated[
        str | None, typer.Option("--instance-type", "-t", help="A catalog instance type (see --list).")
    ] = None,
    gpus_per_node: Annotated[
        int | None, typer.Option("--gpus-per-node", min=1, help="GPUs per node, without --instance-type.")
    ] = None,
    gpu_memory: Annotated[
        str | None,
        typer.Option("--gpu-memory", help="Memory of one GPU, e.g. 80Gi, without --instance-type."),
    ] = None,
    gpu_product: Annotated[
        str | None,
        typer.Option("--gpu-product", help="GPU name for the throughput model, e.g. H100-80GB (see --list)."),
    ] = None,
    max_nodes: Annotated[
        int | None, typer.Option("--max-nodes", min=1, help="Most nodes one copy of the model may span.")
    ] = None,
    nodes: Annotated[int | None, typer.Option("--nodes", min=1, help="Pin the node count.")] = None,
    tensor_parallel_size: Annotated[
        int | None,
        typer.Option("--tensor-parallel-size", min=1, help="Pin the GPUs per tensor-parallel group."),
    ] = None,
    data_parallel_size: Annotated[
        int | None,
        typer.Option("--data-parallel-size", min=1, help="Pin the engine replicas per node (1: no DP)."),
    ] = None,
    max_model_len: Annotated[
        int | None,
        typer.Option(
            "--max-model-len", min=1, help="Longest sequence to serve (default: the model's context)."
        ),
    ] = None,
    dtype: Annotated[
        Literal["bf16", "fp16", "fp8"] | None,
        typer.Option("--dtype", help="Weight format (default: the checkpoint's own)."),
    ] = None,
    gpu_memory_utilization: Annotated[
        float,
        typer.Option(
            "--gpu-memory-utilization", min=0.05, max=1.0, help="Share of each GPU the engine may use."
        ),
    ] = 0.9,
    output: Annotated[
        Literal["text", "json"],
        typer.Option("--output", "-o", help="text (a table and the arithmetic) or json."),
    ] = "text",
    list_catalog: Annotated[
        bool, typer.Option("--list", help="List catalog models and instance types.")
    ] = False,
) -> None:
    """Plan nodes, the DP x TP x PP layout and the KV cache for a model on a GPU shape."""
    if list_catalog:
        _print_catalog()
        return
    if model_config is not None:
        architecture = _model_from_config(model_config, model)
    else:
        architecture = _catalog_model(model)
    request = PlanRequest(
        model=architecture,
        shape=_shape(instance_type, gpus_per_node, gpu_memory, gpu_product),
        max_nodes=max_nodes,
        nodes=nodes,
        max_model_len=max_model_len,
        dtype=dtype,
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size,
        data_parallel_size=data_parallel_size,
    )
    try:
        result = planner.make_plan(request)
    except PlanningError as exc:
        err.print(f"[red]error:[/red] {escape(reword(str(exc), PLAN_FLAGS))}")
        raise typer.Exit(1) from None
    if output == "json":
        print(json.dumps(planner.plan_to_dict(result), indent=2))
        return
    _print_plan(result)


def _print_catalog() -> None:
    models = Table(title="Models")
    for column in ("name", "hugging face id", "params", "active", "weights", "layers", "context"):
        models.add_column(column)
    for entry in planner.MODELS:
        active = entry.moe.active_params if entry.moe else entry.num_params
        models.add_row(
            entry.name,
            entry.hf_id,
            f"{entry.num_params / 1e9:.1f}B",
            f"{active / 1e9:.1f}B",
            entry.native_dtype,
            str(entry.num_layers),
            str(entry.max_context),
        )
    _print_wide(models)
    instances = Table(title="Instance types")
    for column in ("name", "cloud", "GPUs", "GPU", "memory", "bandwidth", "link"):
        instances.add_column(column)
    for instance in planner.INSTANCE_TYPES:
        gpu = instance.gpu
        link = f"{'NVLink' if gpu.nvlink else 'PCIe'} {gpu.link_bandwidth / 1e9:.0f} GB/s"
        instances.add_row(
            instance.name,
            instance.cloud,
            str(instance.gpu_count),
            gpu.name,
            planner.format_gib(gpu.memory_bytes),
            f"{gpu.memory_bandwidth / 1e9:,.0f} GB/s",
            link,
        )
    _print_wide(instances)


def _print_wide(table: Table) -> None:
    """A table as wide as its content needs, so that names stay whole in a pipe or a narrow terminal."""
    wanted = Measurement.get(out, out.options.update(max_width=10_000), table).maximum
    Console(file=out.file, width=max(out.width, wanted), highlight=False).print(table)


StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where `up` keeps logs and its control socket.",
        show_default="$PHALANX_STATE_DIR, else ~/.local/state/phalanx",
    ),
]


def _state_dir(value: Path | None) -> Path:
    from phalanx.embedded.daemon import default_state_dir

    return value if value is not None else default_state_dir()


@app.command()
def up(
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="ModelServing/ModelDeployment YAML to run.")
    ] = None,
    port: Annotated[int, typer.Option("--port", "-p", help="Router port (OpenAI API).")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Router address.")] = "127.0.0.1",
    gpus: Annotated[
        int | None,
        typer.Option(
            "--gpus", min=0, help="GPUs to hand out.", show_default="the count nvidia-smi reports, else 0"
        ),
    ] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Run the controller, the local runtime and the router in the foreground (Ctrl-C stops all)."""
    from phalanx.embedded.up import run_up

    servings, policies = [], []
    if file is not None:
        from phalanx.embedded.specs import servings_from_text

        text = loaded_text(file)
        result = servings_from_text(text, str(file))
        for line in result.warnings:
            err.print(f"[yellow]{line}[/yellow]")
        for line in result.errors:
            err.print(f"[red]{line}[/red]")
        if result.errors:
            err.print(f"{file}: {len(result.errors)} error{'s' if len(result.errors) != 1 else ''}")
            raise typer.Exit(1)
        servings, policies = result.servings, result.policies
    code = run_up(
        servings,
        state_dir=_state_dir(state_dir),
        host=host,
        port=port,
        gpus=gpus,
        console=out,
        policies=policies,
    )
    raise typer.Exit(code)


def loaded_text(path: Path) -> str:
    """A spec file's text (`-`: standard input), read as kubectl reads files: UTF-8 only. A file that
    cannot be read is an error printed here, and exit 1."""
    source = "<stdin>" if str(path) == "-" else str(path)
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)  # more than the limit says so, not its size
        else:
            with path.open("rb") as handle:
                check_file_size(os.fstat(handle.fileno()).st_size, source)
                data = handle.read(MAX_FILE_BYTES + 1)  # a file growing meanwhile stops here
        return decode_text(data, source)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot read {path}: {exc.strerror}")
        raise typer.Exit(1) from None
    except SpecError as exc:
        _report(list(exc.errors), source)
        raise typer.Exit(1) from None


def _control(
    state_dir: Path | None, method: str, path: str, payload: Any = None, timeout: float = 30.0
) -> Any:
    from phalanx.embedded.client import ControlError, NotRunningError, call
    from phalanx.embedded.daemon import CONTROL_SOCKET
    from phalanx.embedded.peers import foreign_socket

    foreign = foreign_socket(_state_dir(state_dir) / CONTROL_SOCKET, os.geteuid())
    if foreign:
        err.print("[red]error:[/red] " + escape(foreign), highlight=False)
        raise typer.Exit(1)
    try:
        return call(_state_dir(state_dir), method, path, payload, timeout)
    except NotRunningError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except ControlError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except PermissionError as exc:  # the state directory is private to the user running `up`
        where = escape(str(exc.filename or _state_dir(state_dir)))
        err.print(
            f"[red]error:[/red] cannot reach {where}: permission denied; "
            "only the user who started `phalanx up` may control it",
            highlight=False,
        )
        raise typer.Exit(1) from None


@app.command()
def status(
    state_dir: StateDirOption = None,
    output: Annotated[
        Literal["table", "json"], typer.Option("--output", "-o", help="A table, or the whole status as JSON.")
    ] = "table",
) -> None:
    """Show the ModelServings, groups and pods of the running `phalanx up`."""
    from phalanx.embedded.view import render_status

    payload = _control(state_dir, "GET", "/v1/status")
    if output == "json":
        print(json.dumps(payload, indent=2))
        return
    # Piped (grep, less, a file), rich would squeeze the tables into 80 columns and cut cells.
    console = out if out.is_terminal else Console(highlight=False, width=PIPE_WIDTH)
    console.print(render_status(payload))


@app.command()
def apply(file: FileOption, state_dir: StateDirOption = None) -> None:
    """Send a spec to the running `phalanx up`; a changed spec rolls its groups out."""
    text = loaded_text(file)
    # Reading a file of the largest size Phalanx takes may take `up` a while on a busy machine.
    result = _control(state_dir, "POST", "/v1/apply", {"text": text, "source": str(file)}, timeout=120.0)
    for line in result.get("warnings", []):
        err.print(f"[yellow]{line}[/yellow]")
    for line in result.get("errors", []):
        err.print(f"[red]{line}[/red]")
    if result.get("errors"):
        raise typer.Exit(1)
    for item in result.get("applied", []):
        kind = str(item.get("kind", "ModelServing")).lower()
        out.print(f"{kind}/{item['name']} {item['change']}")


@app.command()
def scale(
    name: Annotated[str, typer.Argument(help="The ModelServing.")],
    replicas: Annotated[
        int, typer.Option("--replicas", "-r", min=0, help="ServingGroups (or role instances).")
    ],
    role: Annotated[str | None, typer.Option("--role", help="Scale this role inside every group.")] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="The ModelServing's namespace.")
    ] = "default",
    state_dir: StateDirOption = None,
) -> None:
    """Scale a ModelServing's groups, or one role's instances in every group."""
    payload = {"name": name, "namespace": namespace, "replicas": replicas, "role": role}
    _control(state_dir, "POST", "/v1/scale", payload)
    target = f"role {role} of " if role else ""
    out.print(f"scaled {target}modelserving/{name} to {replicas}")


@app.command()
def logs(
    pod: Annotated[str, typer.Argument(help="Pod name, e.g. quickstart-0-sim-0-0.")],
    container: Annotated[
        str | None,
        typer.Option(
            "--container",
            "-c",
            help="The container's log.",
            show_default="the pod's default container, else its first",
        ),
    ] = None,
    previous: Annotated[bool, typer.Option("--previous", help="The run before the last restart.")] = False,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="The pod's namespace.")] = "default",
    state_dir: StateDirOption = None,
) -> None:
    """Print a pod's log (the last 256 KiB)."""
    from urllib.parse import urlencode

    query = {"pod": pod, "namespace": namespace, "previous": "1" if previous else "0"}
    if container:
        query["container"] = container
    text = _control(state_dir, "GET", "/v1/logs?" + urlencode(query))
    sys.stdout.write(text if isinstance(text, str) else json.dumps(text))


@app.command()
def down(state_dir: StateDirOption = None) -> None:
    """Stop the running `phalanx up`: the router, then every pod."""
    _control(state_dir, "POST", "/v1/down")
    out.print("phalanx up is stopping")


@app.command()
def operator(
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            help="The kubeconfig file of the cluster to run against.",
            show_default=KUBECONFIG_ORDER,
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Watch one namespace.", show_default="all namespaces"),
    ] = None,
    lease_namespace: Annotated[
        str, typer.Option("--lease-namespace", help="Where the leader Lease lives.")
    ] = "default",
    health_port: Annotated[int, typer.Option("--health-port", help="/healthz, /readyz and /metrics.")] = 8081,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Objects reconciled at once.")] = 2,
    read_interval: Annotated[
        float,
        typer.Option(
            "--inflight-read-interval", help="Seconds between reads of draining entry pods' engine /metrics."
        ),
    ] = 0.5,
    read_timeout: Annotated[
        float, typer.Option("--inflight-read-timeout", help="Seconds one such read may take.")
    ] = 1.0,
    read_concurrency: Annotated[
        int, typer.Option("--inflight-read-concurrency", help="Such reads at once.")
    ] = 32,
    router_metrics_url: Annotated[
        str | None,
        typer.Option(
            "--router-metrics-url",
            help="The router's /metrics page, read by the autoscaler (queue, held and in-flight requests).",
            show_default="none: the router's figures are unknown",
        ),
    ] = None,
) -> None:
    """Run the Kubernetes operator (leader-elected: run two replicas for a seamless failover)."""
    from phalanx.operator.inflight import ReadSettings, read_settings_problems
    from phalanx.operator.main import OperatorStartError, run_operator
    from phalanx.operator.manager import OperatorOptions

    reads = ReadSettings(interval_s=read_interval, timeout_s=read_timeout, max_concurrency=read_concurrency)
    if problems := read_settings_problems(reads):
        for problem in problems:
            err.print(f"[red]error:[/red] {escape(problem)}")
        raise typer.Exit(2)
    options = OperatorOptions(
        namespace=namespace,
        lease_namespace=lease_namespace,
        health_port=health_port,
        workers=workers,
        in_flight_reads=reads,
        router_metrics_url=router_metrics_url,
    )
    try:
        code = run_operator(options, kubeconfig)
    except OperatorStartError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command()
def install(
    render_manifests: Annotated[
        bool, typer.Option("--render", help="Print the manifests as YAML; nothing is sent to a cluster.")
    ] = False,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="Namespace of the operator and the router.")
    ] = "phalanx-system",
    name: Annotated[
        str, typer.Option("--name", help="Prefix of the object names (Helm's release name).")
    ] = "phalanx",
    image: Annotated[
        str | None,
        typer.Option(
            "--image", help="The image, as repository[:tag].", show_default="phalanx:<this version>"
        ),
    ] = None,
    image_pull_policy: Annotated[
        str, typer.Option("--image-pull-policy", help="Always, IfNotPresent or Never.")
    ] = "IfNotPresent",
    watch_namespace: Annotated[
        str | None,
        typer.Option("--watch-namespace", help="Watch one namespace.", show_default="all namespaces"),
    ] = None,
    operator_replicas: Annotated[
        int, typer.Option("--operator-replicas", min=0, help="Operator pods (one leads, the others wait).")
    ] = 2,
    router_replicas: Annotated[int, typer.Option("--router-replicas", min=0, help="Router pods.")] = 2,
    with_router: Annotated[bool, typer.Option("--router/--no-router", help="Include the router.")] = True,
    operator_placement: Annotated[
        bool,
        typer.Option(
            "--operator-placement/--no-operator-placement",
            help="Let the operator list nodes and bound pods (the autoscaler's placement limit).",
        ),
    ] = False,
    operator_router_metrics_url: Annotated[
        str,
        typer.Option(
            "--operator-router-metrics-url",
            help="The router page the autoscaler reads.",
            show_default="the router's Service when the router is installed",
        ),
    ] = "",
    router_api_keys_secret: Annotated[
        str, typer.Option("--router-api-keys-secret", help="Secret whose entries are the router's API keys.")
    ] = "",
    dashboards: Annotated[
        bool,
        typer.Option(
            "--dashboards/--no-dashboards", help="Grafana dashboards as ConfigMaps for its sidecar."
        ),
    ] = False,
    dashboard_label: Annotated[
        str, typer.Option("--dashboard-label", help="Label[=value] Grafana's dashboard sidecar watches.")
    ] = "grafana_dashboard=1",
    alert_rules: Annotated[
        bool, typer.Option("--alert-rules/--no-alert-rules", help="The alert rules as a PrometheusRule.")
    ] = False,
    scrape: Annotated[
        bool,
        typer.Option(
            "--scrape/--no-scrape",
            help="ServiceMonitor and PodMonitors for the operator, router and engines.",
        ),
    ] = False,
    engine_metrics_port: Annotated[
        str,
        typer.Option("--engine-metrics-port", help="The engines' container port (name) serving /metrics."),
    ] = "http",
    crds: Annotated[bool, typer.Option("--crds/--no-crds", help="Include the CRDs.")] = True,
    create_namespace: Annotated[
        bool,
        typer.Option("--create-namespace/--no-create-namespace", help="Include the Namespace object."),
    ] = True,
) -> None:
    """Print the operator, router, RBAC and CRD manifests (the Helm chart's objects) for kubectl."""
    import os
    import shlex
    from dataclasses import replace

    from phalanx.operator.install import InstallError, InstallOptions, helm_set_flags, render, split_image

    defaults = InstallOptions()
    repository, tag = split_image(image) if image else (defaults.image_repository, "")
    options = InstallOptions(
        release=name,
        namespace=namespace,
        image_repository=repository,
        image_tag=tag,
        image_pull_policy=image_pull_policy,
        watch_namespace=watch_namespace or "",
        operator=replace(defaults.operator, replicas=operator_replicas),
        operator_placement=operator_placement,
        operator_router_metrics_url=operator_router_metrics_url,
        router_enabled=with_router,
        router=replace(defaults.router, replicas=router_replicas),
        router_api_keys_secret=router_api_keys_secret,
        dashboards=dashboards,
        dashboard_label=dashboard_label.partition("=")[0],
        dashboard_label_value=dashboard_label.partition("=")[2],
        alert_rules=alert_rules,
        scrape=scrape,
        engine_metrics_port=engine_metrics_port,
        crds=crds,
        create_namespace=create_namespace,
    )
    try:
        objects = render(options)
    except InstallError as exc:
        for problem in exc.problems:
            err.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(1) from None
    if not render_manifests:
        given = sys.argv[sys.argv.index("install") + 1 :] if "install" in sys.argv else []
        command = shlex.join(["phalanx", "install", "--render", *given])
        helm = ["helm", "install", name, "deploy/helm/phalanx", "--namespace", namespace]
        helm += ["--create-namespace"] if create_namespace else []
        helm += [*([] if crds else ["--skip-crds"]), *helm_set_flags(options)]
        err.print(
            "phalanx install does not change a cluster itself: it prints the manifests for you to apply.\n"
            "Apply them with server-side apply (the ModelServing CRD is about 1 MB, too large for the\n"
            "annotation of a client-side apply):\n\n"
            f"  {command} | kubectl apply --server-side -f -\n\n"
            "or install the Helm chart with the same settings (docs/install.md):\n\n"
            f"  {shlex.join(helm)}",
            markup=False,
        )
        raise typer.Exit(2)
    try:
        sys.stdout.write(dump_yaml(objects))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader (kubectl) stopped early; its own error says why
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from None


@app.command()
def router(
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            help="The kubeconfig file of the cluster to discover in.",
            show_default=KUBECONFIG_ORDER,
        ),
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Discover in this namespace; repeatable.",
            show_default="all namespaces",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (OpenAI API); 0.0.0.0: every interface.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on.")] = 8000,
    backend: Annotated[
        list[str] | None,
        typer.Option(
            "--backend",
            "-b",
            help="Route to this OpenAI server (http://host:port), not discovered ones; repeatable. "
            "?pd-role=prefill|decode marks a prefill/decode engine.",
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="One JSON line per request (no prompts).")
    ] = True,
    policy: Annotated[
        str,
        typer.Option("--policy", help="Routing policy; a request may pick another with x-routing-policy."),
    ] = "auto",
    api_keys: Annotated[
        Path | None,
        typer.Option(
            "--api-keys", help="Require these bearer keys: a key file or a mounted Secret directory."
        ),
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option("--max-concurrency", min=1, help="Requests one endpoint takes at a time; more wait."),
    ] = None,
    max_queue: Annotated[
        int, typer.Option("--max-queue", min=0, help="Requests that may wait; more: 429.")
    ] = 1024,
    queue_timeout: Annotated[
        float, typer.Option("--queue-timeout", min=0.001, help="Seconds a request may wait; then 504.")
    ] = 30.0,
    max_body_mib: Annotated[
        float,
        typer.Option("--max-body-mib", min=0.001, help="Largest request body in MiB, decoded; larger: 413."),
    ] = 16.0,
    max_held_body_mib: Annotated[
        float,
        typer.Option(
            "--max-held-body-mib",
            min=0.001,
            help="MiB of request bodies held at once, all requests; more: 503.",
        ),
    ] = 256.0,
    body_timeout: Annotated[
        float,
        typer.Option(
            "--body-timeout", min=0.001, help="Seconds a request body may take to arrive; then 408."
        ),
    ] = 60.0,
    head_timeout: Annotated[
        float,
        typer.Option(
            "--head-timeout", min=0.001, help="Seconds a request head may take once begun; then closed."
        ),
    ] = 10.0,
    idle_timeout: Annotated[
        float,
        typer.Option("--idle-timeout", min=0.001, help="Seconds an idle client connection is kept open."),
    ] = 75.0,
    max_connections: Annotated[
        int | None,
        typer.Option(
            "--max-connections",
            min=1,
            help="Client connections open at once; past it the longest idle one is closed.",
            show_default="half the open-file limit, at most 10000",
        ),
    ] = None,
    prefill_timeout: Annotated[
        float,
        typer.Option(
            "--prefill-timeout",
            min=0.001,
            help="Seconds a prefill step may run past its expected queue and prefill time "
            "(prefill/decode disaggregation); then decode-only.",
        ),
    ] = 30.0,
    min_prefill_tokens: Annotated[
        int,
        typer.Option(
            "--prefill-from",
            min=0,
            help="Prompts of fewer tokens skip the prefill engines (vLLM); 0: none do.",
        ),
    ] = 256,
    max_prefill_wait: Annotated[
        float,
        typer.Option(
            "--max-prefill-wait",
            min=0,
            help="Seconds a prompt may queue at a prefill engine beyond its own prefill time; "
            "longer: prefilled on the decode engine (vLLM).",
        ),
    ] = 1.0,
    prefill_rate_prior: Annotated[
        float,
        typer.Option(
            "--prefill-rate-prior",
            min=0.001,
            help="Prompt tokens per second assumed for a prefill engine until it has answered one.",
        ),
    ] = 4000.0,
    hold_model: Annotated[
        list[str] | None,
        typer.Option(
            "--hold-model",
            help="While no endpoint serves this model, its requests wait in the queue (up to "
            "--queue-timeout) instead of a 503; repeatable. ModelServings' models always do.",
        ),
    ] = None,
) -> None:
    """Run the router alone: in front of the cluster's ModelServings, or of --backend servers."""
    from rich.markup import escape

    from phalanx.router.admission import AdmissionConfig
    from phalanx.router.main import RouterOptions, RouterStartError, run_router
    from phalanx.router.policies.pd import PdConfig
    from phalanx.router.server import RouterConfig

    if any(not name.strip() for name in hold_model or ()):
        err.print("[red]error:[/red] --hold-model: a model name may not be empty")
        raise typer.Exit(2)
    options = RouterOptions(
        host=host,
        port=port,
        namespaces=tuple(namespace or ()),
        kubeconfig=kubeconfig,
        backends=tuple(backend or ()),
    )
    try:
        config = RouterConfig(
            access_log=access_log,
            client_max_size=int(max_body_mib * 2**20),
            max_held_body_bytes=int(max_held_body_mib * 2**20),
            body_timeout_s=body_timeout,
            head_timeout_s=head_timeout,
            idle_timeout_s=idle_timeout,
            max_connections=max_connections,
            policy=policy,
            api_keys=api_keys,
            admission=AdmissionConfig(
                default_cap=max_concurrency, max_queue=max_queue, queue_timeout_s=queue_timeout
            ),
            pd=PdConfig(
                min_prefill_tokens=min_prefill_tokens,
                max_prefill_wait_s=max_prefill_wait,
                prefill_rate_prior=prefill_rate_prior,
                prefill_timeout_s=prefill_timeout,
            ),
            hold_models=tuple(hold_model or ()),
        )
    except ValueError as exc:  # an unknown policy: the message lists the valid ones
        err.print(f"[red]error:[/red] --policy: {escape(str(exc))}")
        raise typer.Exit(1) from None
    try:
        code = run_router(options, config)
    except RouterStartError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def sim(ctx: typer.Context) -> None:
    """Run the vLLM-compatible simulator engine (its flags: phalanx sim --help)."""
    from phalanx.sim.main import main as sim_main

    raise typer.Exit(sim_main(list(ctx.args)))


@app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            "-f",
            help="Kthena, LeaderWorkerSet, KAITO or AIBrix YAML (or JSON); - reads stdin.",
        ),
    ],
    instance_type: Annotated[
        str | None,
        typer.Option("--instance-type", help="GPU shape of a KAITO Workspace on bring-your-own nodes."),
    ] = None,
    gpus_per_node: Annotated[
        int | None, typer.Option("--gpus-per-node", min=1, help="Or the shape as GPUs per node...")
    ] = None,
    gpu_memory: Annotated[
        str | None, typer.Option("--gpu-memory", help="...and memory per GPU, e.g. 80Gi.")
    ] = None,
    gpu_product: Annotated[str | None, typer.Option("--gpu-product", help="...and the GPU's name.")] = None,
    model_config: Annotated[
        Path | None,
        typer.Option(
            "--model-config",
            help="config.json (or a model directory) of a KAITO preset model the catalog does not know.",
        ),
    ] = None,
) -> None:
    """Turn Kthena, LeaderWorkerSet, KAITO or AIBrix resources into Phalanx ones (YAML on stdout).

    Every field without an equivalent becomes a comment at its place. Exit 0: nothing was lost.
    Exit 3: something was (listed on stderr). Exit 1: bad input.
    """
    from phalanx.importers import IMPORTABLE, InputError, import_documents
    from phalanx.importers.render import render_imported

    shape = {
        key: value
        for key, value in (
            ("instanceType", instance_type),
            ("gpusPerNode", gpus_per_node),
            ("gpuMemory", gpu_memory),
            ("gpuProduct", gpu_product),
        )
        if value is not None
    }

    source = "<stdin>" if str(file) == "-" else str(file)
    text = loaded_text(file)
    try:
        documents = parse_yaml(text, source)
    except SpecError as exc:
        _report(list(exc.errors), source)
        raise typer.Exit(1) from None
    try:
        result = import_documents(
            [document.data for document in documents],
            shape,
            _import_model_config(model_config) if model_config is not None else None,
        )
    except InputError as exc:
        _report([documents[p.document].locate(p) for p in exc.problems], source)
        raise typer.Exit(1) from None
    if not result.converted:
        err.print(f"[red]error:[/red] {source} holds no {IMPORTABLE} to import")
        raise typer.Exit(1)
    if not _imported_valid(result.items, source):
        raise typer.Exit(1)
    sys.stdout.write(render_imported(result.items))
    lost = [(item.source, note) for item in result.items for note in item.notes if note.lost]
    for origin, note in lost:
        err.print(f"[yellow]{source}: {origin}: not kept: {note.text}[/yellow]", markup=True, highlight=False)
    if lost:
        err.print(f"{source}: {len(lost)} setting{'s' if len(lost) != 1 else ''} had no Phalanx equivalent")
        raise typer.Exit(3)


def _import_model_config(path: Path) -> dict[str, Any]:
    """A config.json as data, after the same checks `plan --model-config` makes; problems printed."""
    _model_from_config(path, None)
    data: dict[str, Any] = json.loads(loaded_text(config_file(path)))
    return data


def _imported_valid(items: list[Any], source: str) -> bool:
    """The imported resources pass `phalanx validate` (a ModelDeployment also plans); problems: stderr."""
    valid = True
    for item in items:
        if item.obj is None or item.obj.get("apiVersion") != GROUP_VERSION:
            continue
        resource, problems = parse_resource(item.obj)
        if isinstance(resource, ModelDeployment):
            try:
                problems = problems + compile_deployment(resource).warnings
            except SpecError as exc:
                problems = problems + list(exc.errors)
        origin = f"{source} ({item.source}, imported)"
        _report(problems, origin)
        valid = valid and not any(p.severity == "error" for p in problems)
    return valid


@app.command()
def version() -> None:
    """Print the Phalanx version."""
    print(__version__)


def main() -> None:
    if sys.argv[1:2] == ["sim"]:
        # The simulator has its own argument parser (vLLM's flag names) and starts fast.
        from phalanx.sim.main import main as sim_main

        sys.exit(sim_main(sys.argv[2:]))
    from phalanx.http.loop import EventLoopError

    try:
        app()
    except EventLoopError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None
