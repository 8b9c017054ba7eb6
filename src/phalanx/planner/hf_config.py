"""A model's Hugging Face `config.json` (already parsed into a mapping) -> the architecture the planner needs.

Keys are read as the configs write them. Multimodal wrappers (Gemma 3, Mistral 3) keep the language model in
`text_config`; its keys win over the top level's, and a `vision_config` adds the encoder's parameters.
Every problem is reported at once, each with the key (as a path inside config.json) and the fix; the
architecture is returned only when there is no error. Warnings say where a number is assumed.

Rules, beyond the plain widths and counts:
* `head_dim` when present, else hidden_size / num_attention_heads (which must divide);
  `num_key_value_heads` defaults to the attention heads (multi-head attention).
* dtype from `torch_dtype` or `dtype`; `quantization_config.quant_method` fp8 (with its
  `weight_block_size`) and mxfp4 are modelled, as is compressed-tensors' float-quantized (fp8) format;
  other weight formats are refused rather than guessed. float32 checkpoints are served in 16 bits.
* Experts: `num_local_experts` / `num_experts` / `n_routed_experts`, `num_experts_per_tok` /
  `experts_per_token`, `moe_intermediate_size` (else `intermediate_size`), `n_shared_experts` or
  `shared_expert_intermediate_size`, DeepSeek's `first_k_dense_replace`, Qwen's `mlp_only_layers` and
  `decoder_sparse_step`.
* MLA when `kv_lora_rank` is set (`q_lora_rank`, `qk_nope_head_dim`, `qk_rope_head_dim`, `v_head_dim`).
* `tie_word_embeddings`, defaulting as the model's transformers class does (Gemma: tied; others: not).
* Sliding windows only for layers a config names: `layer_types` entries "sliding_attention", or Gemma's
  `sliding_window_pattern`. A `sliding_window` without them (Mistral v0.1, Phi-3) is planned as full
  attention, as vLLM's Llama-style models run it, with a warning.
* Small per-family parameters: Qwen2 q/k/v biases, `attention_bias` (q/k/v/o), `mlp_bias`, Qwen3 and Gemma 3
  q/k norms, Gemma's four norms per layer, gpt-oss's sinks, expert and router biases, DeepSeek's router bias
  (`topk_method` noaux_tc).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from phalanx.planner.params import count_active_parameters, count_parameters
from phalanx.planner.types import MLA, Dtype, ModelArchitecture, MoE
from phalanx.planner.vision import VISION_MAX, vision_params, vision_problems

ConfigPath = tuple[str | int, ...]

# Model types whose layers are not attention + MLP: the memory model cannot describe their state.
UNSUPPORTED_TYPES = {
    "nemotron_h": "hybrid Mamba layers",
    "jamba": "hybrid Mamba layers",
    "mamba": "Mamba layers",
    "mamba2": "Mamba layers",
    "falcon_h1": "hybrid Mamba layers",
    "qwen3_next": "linear-attention layers",
    "qwen3_5": "linear-attention layers",
    "qwen3_5_moe": "linear-attention layers",
}
# Types whose layer shapes the parameter model was checked against.
KNOWN_TYPES = {
    "llama",
    "mistral",
    "ministral",
    "ministral3",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "gemma3",
    "gemma3_text",
    "phi3",
    "gpt_oss",
    "deepseek_v2",
    "deepseek_v3",
}
_DTYPES: dict[str, Dtype] = {"bfloat16": "bf16", "float16": "fp16", "float32": "bf16"}
# Bounds far beyond any published model, so that no number of a config can make the planner's work (it
# loops over layers) or its arithmetic unbounded: a config beyond them is refused, not planned.
MAX_WIDTH = 2**31 - 1  # config.json numbers are 32-bit in transformers' own checks
MAX_LAYERS = 10_000
MAX_EXPERTS = 100_000


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with (or assumed about) a config.json key."""

    path: ConfigPath
    message: str
    fix: str = ""
    value: Any = UNSET
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class ParsedConfig:
    model: ModelArchitecture | None  # None when any problem is an error
    problems: tuple[ConfigProblem, ...] = ()

    @property
    def errors(self) -> tuple[ConfigProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


@dataclass
class _Reader:
    """Reads keys of the language model's config (text_config when nested), collecting problems."""

    config: Mapping[str, Any]
    text: Mapping[str, Any]
    prefix: ConfigPath
    problems: list[ConfigProblem] = field(default_factory=list)

    def path(self, key: str) -> ConfigPath:
        """Where `key` is (or, when missing, belongs: in the language model's config)."""
        return (key,) if key not in self.text and key in self.config else (*self.prefix, key)

    def get(self, key: str) -> Any:
        """The text model's value, else the top level's, else UNSET."""
        if key in self.text:
            return self.text[key]
        return self.config.get(key, UNSET)

    def error(self, key: str, message: str, fix: str, value: Any = UNSET) -> None:
        self.problems.append(ConfigProblem(self.path(key), message, fix, value))

    def warn(self, key: str, message: str, value: Any = UNSET) -> None:
        self.problems.append(ConfigProblem(self.path(key), message, value=value, severity="warning"))

    def count(
        self, key: str, what: str, *, required: bool = True, minimum: int = 1, maximum: int = MAX_WIDTH
    ) -> int | None:
        """A whole number in [minimum, maximum]; a problem naming the key when missing or malformed."""
        value = self.get(key)
        if value is UNSET or value is None:
            if required:
                where = f" to {'.'.join(map(str, self.prefix))}" if self.prefix else ""
                fix = f"add {key} ({what}){where}, from the model's published config.json"
                self.error(key, "is missing", fix)
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self.error(
                key,
                f"must be a whole number from {minimum} to {maximum} ({what})",
                f"write {key} as a number, as in the model's config.json",
                value,
            )
            return None
        return value

    def first_count(
        self, keys: tuple[str, ...], what: str, *, required: bool, maximum: int = MAX_WIDTH
    ) -> int | None:
        """The first of `keys` the config has (several spellings of one number)."""
        for key in keys:
            if self.get(key) is not UNSET and self.get(key) is not None:
                return self.count(key, what, maximum=maximum)
        if required:
            self.count(keys[0], what, maximum=maximum)
        return None


def _language_model(config: Mapping[str, Any]) -> tuple[Mapping[str, Any], ConfigPath]:
    text = config.get("text_config")
    if isinstance(text, Mapping):
        return text, ("text_config",)
    return config, ()


def _model_type(reader: _Reader) -> str:
    kind = reader.get("model_type")
    return kind if isinstance(kind, str) else ""


def _dtype(reader: _Reader) -> tuple[Dtype, int | None]:
    """The checkpoint's weight format and, for block-quantised fp8, the block width."""
    quant = reader.config.get("quantization_config", reader.text.get("quantization_config"))
    if isinstance(quant, Mapping):
        method = quant.get("quant_method")
        if method == "fp8":
            block = quant.get("weight_block_size")
            size = block[0] if isinstance(block, list) and block and isinstance(block[0], int) else None
            return "fp8", _block(reader, ("quantization_config", "weight_block_size"), size)
        if method == "mxfp4":
            return "mxfp4", None
        if method == "compressed-tensors" and quant.get("format") == "float-quantized":
            return "fp8", _block(reader, ("quantization_config", "config_groups"), _compressed_block(quant))
        reader.problems.append(
            ConfigProblem(
                ("quantization_config", "quant_method"),
                "is a weight format the planner does not model (fp8 and mxfp4 are)",
                "plan from the bf16 or fp8 release of the model, whose config.json has no such format",
                method,
            )
        )
        return "bf16", None
    for key in ("torch_dtype", "dtype"):
        value = reader.get(key)
        if value is UNSET:
            continue
        if isinstance(value, str) and value in _DTYPES:
            if value == "float32":
                reader.warn(
                    key, "a float32 checkpoint is served in 16 bits by vLLM: planned at 2 bytes a weight"
                )
            return _DTYPES[value], None
        reader.error(key, "is not bfloat16, float16 or float32", "write the checkpoint's dtype", value)
        return "bf16", None
    reader.warn("torch_dtype", "is not given: planned as bfloat16 weights")
    return "bf16", None


def _block(reader: _Reader, path: ConfigPath, size: int | None) -> int | None:
    """An fp8 block width: a whole number from 1 to 65536 (shards are checked against it)."""
    if size is None or (not isinstance(size, bool) and 1 <= size <= 65536):
        return size
    reader.problems.append(
        ConfigProblem(
            path, "must give a block width from 1 to 65536", "write it as the checkpoint has it", size
        )
    )
    return None


def _compressed_block(quant: Mapping[str, Any]) -> int | None:
    groups = quant.get("config_groups")
    for group in groups.values() if isinstance(groups, Mapping) else ():
        weights = group.get("weights") if isinstance(group, Mapping) else None
        block = weights.get("block_structure") if isinstance(weights, Mapping) else None
        if isinstance(block, list) and block and isinstance(block[0], int):
            return block[0]
    return None


def _moe(reader: _Reader, layers: int | None, intermediate: int | None) -> MoE | None:
    experts = reader.first_count(
        ("num_local_experts", "num_experts", "n_routed_experts"),
        "experts per layer",
        required=False,
        maximum=MAX_EXPERTS,
    )
    if experts is None or experts <= 1:
        return None
    per_token = reader.first_count(
        ("num_experts_per_tok", "experts_per_token", "num_experts_per_token"),
        f"experts each token runs, at most the {experts} experts",
        required=True,
        maximum=experts,
    )
    width = (
        reader.first_count(("moe_intermediate_size",), "each expert's width", required=False) or intermediate
    )
    if per_token is None or width is None or layers is None:
        return None
    shared = reader.count("n_shared_experts", "always-on experts", required=False, minimum=0) or 0
    shared_width = reader.count(
        "shared_expert_intermediate_size", "the shared expert's width", required=False, minimum=0
    )
    if shared_width:
        shared = max(shared, 1)
    kind = _model_type(reader)
    return MoE(
        num_experts=experts,
        experts_per_token=per_token,
        moe_intermediate_size=width,
        num_shared_experts=shared,
        num_dense_layers=_dense_layers(reader, layers),
        shared_expert_intermediate_size=shared_width or None,
        router_bias=kind == "gpt_oss" or reader.get("topk_method") == "noaux_tc",
        expert_bias=kind == "gpt_oss",
    )


def _dense_layers(reader: _Reader, layers: int) -> int:
    """Layers that keep a dense MLP: DeepSeek's leading ones, or Qwen's listed and skipped ones."""
    leading = reader.count(
        "first_k_dense_replace",
        f"leading dense layers, of {layers}",
        required=False,
        minimum=0,
        maximum=layers,
    )
    if leading is not None:
        return leading
    listed = reader.get("mlp_only_layers")
    dense: set[int] = set()
    if listed is not UNSET and listed is not None:
        if not isinstance(listed, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < layers for i in listed
        ):
            reader.error(
                "mlp_only_layers",
                f"must list layer numbers from 0 to {layers - 1}",
                "write the dense layers' numbers, as in the model's config.json",
                listed,
            )
        else:
            dense = set(listed)
    step = reader.count("decoder_sparse_step", "MoE layer interval", required=False, maximum=layers) or 1
    return sum(1 for i in range(layers) if i in dense or (i + 1) % step)


def _mla(reader: _Reader) -> MLA | None:
    rank = reader.count("kv_lora_rank", "the latent KV width", required=False)
    if rank is None:
        return None
    rope = reader.count("qk_rope_head_dim", "the rotary part of each query/key head", required=True)
    nope = reader.count("qk_nope_head_dim", "the non-rotary part of each query/key head", required=True)
    value = reader.count("v_head_dim", "each value head's width", required=True)
    query = reader.count("q_lora_rank", "the query latent width", required=False)
    if rope is None or nope is None or value is None:
        return None
    return MLA(
        kv_lora_rank=rank, qk_rope_head_dim=rope, q_lora_rank=query, qk_nope_head_dim=nope, v_head_dim=value
    )


def _head_dim(reader: _Reader, hidden: int | None, heads: int | None, mla: MLA | None) -> int | None:
    if mla is not None:
        return mla.v_head_dim
    explicit = reader.count("head_dim", "the width of one attention head", required=False)
    if explicit is not None or hidden is None or heads is None:
        return explicit
    if hidden % heads:
        reader.error(
            "head_dim",
            f"is missing and hidden_size {hidden} / num_attention_heads {heads} is not a whole number",
            "add head_dim as the model publishes it",
        )
        return None
    return hidden // heads


def _sliding(reader: _Reader, layers: int | None, context: int | None) -> tuple[int | None, int]:
    """(window, sliding layers): only layers the config names as sliding."""
    window = reader.get("sliding_window")
    if not isinstance(window, int) or isinstance(window, bool) or layers is None:
        return None, 0
    kinds = reader.get("layer_types")
    if isinstance(kinds, list):
        if len(kinds) != layers:
            reader.error(
                "layer_types",
                f"lists {len(kinds)} layers, not num_hidden_layers {layers}",
                "list one type per layer",
            )
            return None, 0
        return window, sum(1 for kind in kinds if kind == "sliding_attention")
    pattern = reader.get("sliding_window_pattern")
    if isinstance(pattern, int) and not isinstance(pattern, bool) and pattern > 0:
        return window, layers - layers // pattern  # every pattern-th layer attends to everything
    if reader.get("use_sliding_window") is not False and (context is None or window < context):
        reader.warn(
            "sliding_window",
            "names a window but no layers that use it: planned as full attention in every layer,"
            " which can only overestimate the KV cache",
            window,
        )
    return None, 0


def _tied(reader: _Reader) -> bool:
    value = reader.get("tie_word_embeddings")
    if isinstance(value, bool):
        return value
    return _model_type(reader).startswith("gemma")  # transformers' Gemma configs tie; the others do not


def architecture_from_config(config: Any, name: str) -> ParsedConfig:
    """The architecture of the model whose config.json is `config`, named `name` (its Hugging Face id)."""
    if not isinstance(config, Mapping):
        return ParsedConfig(
            None, (ConfigProblem((), "is not a JSON object", "give the model's config.json"),)
        )
    text, prefix = _language_model(config)
    reader = _Reader(config, text, prefix)
    kind = _model_type(reader)
    if kind in UNSUPPORTED_TYPES:
        reader.error(
            "model_type",
            f"has {UNSUPPORTED_TYPES[kind]}, whose cache the memory model does not describe",
            "choose an attention-only model",
            kind,
        )
    elif kind not in KNOWN_TYPES:
        reader.warn(
            "model_type",
            "is not a type Phalanx has checked: its parameters are counted as a Llama-style decoder's"
            " (gated MLP, no biases)",
            kind or UNSET,
        )
    layers = reader.count("num_hidden_layers", "decoder layers", maximum=MAX_LAYERS)
    hidden = reader.count("hidden_size", "the width of the residual stream")
    heads = reader.count("num_attention_heads", "query heads per layer")
    kv_heads = reader.count("num_key_value_heads", "key/value heads per layer", required=False) or heads
    vocab = reader.count("vocab_size", "tokens in the vocabulary")
    context = reader.count("max_position_embeddings", "the longest context the model supports")
    mla = _mla(reader)
    intermediate = reader.first_count(("intermediate_size",), "the dense MLP width", required=False)
    moe = _moe(reader, layers, intermediate)
    if intermediate is None and (moe is None or moe.num_dense_layers):
        reader.count("intermediate_size", "the dense MLP width")
    head_dim = _head_dim(reader, hidden, heads, mla)
    if heads and kv_heads and mla is None and heads % kv_heads:
        reader.error(
            "num_key_value_heads",
            f"must divide num_attention_heads {heads}",
            "check both against the model's config.json",
            kv_heads,
        )
    dtype, block = _dtype(reader)
    window, sliding = _sliding(reader, layers, context)
    if reader.problems and any(p.severity == "error" for p in reader.problems):
        return ParsedConfig(None, tuple(reader.problems))
    assert None not in (layers, hidden, heads, kv_heads, vocab, context, head_dim)
    assert layers and hidden and heads and kv_heads and vocab and context and head_dim
    for key, value in vision_problems(config):
        reader.problems.append(
            ConfigProblem(
                ("vision_config", key),
                f"must be a whole number from 1 to {VISION_MAX[key]}",
                "write it as in the model's config.json",
                value,
            )
        )
    if any(p.severity == "error" for p in reader.problems):
        return ParsedConfig(None, tuple(reader.problems))
    vision = vision_params(config, hidden)
    if vision is not None and not vision.exact:
        reader.problems.append(
            ConfigProblem(
                ("vision_config",),
                "is not an encoder type Phalanx has checked: its parameters are estimated as a plain ViT's",
                severity="warning",
            )
        )
    model = ModelArchitecture(
        name=name,
        hf_id=name,
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate or (moe.moe_intermediate_size if moe else 0),
        vocab_size=vocab,
        num_params=0,
        max_context=context,
        native_dtype=dtype,
        tied_embeddings=_tied(reader),
        moe=moe,
        mla=mla,
        fp8_block_size=block,
        qkv_bias=kind.startswith("qwen2") or reader.get("attention_bias") is True,
        o_bias=reader.get("attention_bias") is True,
        qk_norm=kind.startswith(("qwen3", "gemma3")),
        norms_per_layer=4 if kind.startswith(("gemma2", "gemma3")) else 2,
        mlp_bias=reader.get("mlp_bias") is True,
        attention_sinks=kind == "gpt_oss",
        sliding_window=window,
        sliding_window_layers=sliding,
        extra_params=vision.params if vision else 0,
    )
    return ParsedConfig(_with_counts(model), tuple(reader.problems))


def _with_counts(model: ModelArchitecture) -> ModelArchitecture:
    counted = replace(model, num_params=count_parameters(model))
    if counted.moe is None:
        return counted
    return replace(counted, moe=replace(counted.moe, active_params=count_active_parameters(counted)))
