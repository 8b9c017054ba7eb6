"""Parameters of the vision encoder a multimodal checkpoint carries next to its language model.

The planner only needs their bytes (they sit on the first pipeline stage, in bf16). SigLIP (Gemma 3) is
counted exactly; Pixtral (Mistral 3) from its layer shapes; any other encoder with the generic ViT shape
below, which the caller reports as an estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VisionEstimate:
    params: int
    exact: bool  # False: the generic ViT shape was assumed


# The vision encoder's numbers the estimate reads, and their bounds (beyond any published encoder).
VISION_MAX: dict[str, int] = {
    "hidden_size": 2**20,
    "intermediate_size": 2**22,
    "patch_size": 4096,
    "image_size": 2**20,
    "num_channels": 64,
    "num_hidden_layers": 10_000,
    "depth": 10_000,
}


def vision_problems(config: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(key, value) of every vision_config number the estimate would read that is out of its bounds."""
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping):
        return []
    bad = []
    for key, maximum in VISION_MAX.items():
        value = vision.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            bad.append((key, value))
    return bad


def _int(config: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = config.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def siglip_params(vision: Mapping[str, Any]) -> int:
    """SigLIP: patch convolution and learned positions, biased attention and MLP, two LayerNorms a layer."""
    h, width = _int(vision, "hidden_size"), _int(vision, "intermediate_size")
    patch, image = _int(vision, "patch_size", 14), _int(vision, "image_size", 224)
    channels = _int(vision, "num_channels", 3)
    embeddings = channels * patch * patch * h + h + (image // patch) ** 2 * h
    layer = 4 * (h * h + h) + (h * width + width) + (width * h + h) + 2 * 2 * h
    return embeddings + _int(vision, "num_hidden_layers") * layer + 2 * h


def pixtral_params(vision: Mapping[str, Any]) -> int:
    """Pixtral: unbiased patch convolution, attention and gated MLP, RMSNorms (RoPE: no learned positions)."""
    h, width = _int(vision, "hidden_size"), _int(vision, "intermediate_size")
    patch, channels = _int(vision, "patch_size", 16), _int(vision, "num_channels", 3)
    layer = 4 * h * h + 3 * h * width + 2 * h
    return channels * patch * patch * h + h + _int(vision, "num_hidden_layers") * layer


def generic_vit_params(vision: Mapping[str, Any]) -> int:
    """A ViT of biased attention and a two-matrix MLP, two LayerNorms a layer (positions not counted)."""
    h = _int(vision, "hidden_size")
    width = _int(vision, "intermediate_size", 4 * h)
    layers = _int(vision, "num_hidden_layers") or _int(vision, "depth")
    layer = 4 * (h * h + h) + 2 * h * width + width + h + 4 * h
    return layers * layer


def projector_params(config: Mapping[str, Any], vision: Mapping[str, Any], text_hidden: int) -> int:
    """The layers that map image features into the text model's width."""
    h = _int(vision, "hidden_size")
    kind = config.get("model_type")
    if kind == "gemma3":  # a norm of the vision width and one projection
        return h + h * text_hidden
    if kind == "mistral3":  # a norm, a 2 x 2 patch merger, then two projections
        merge = _int(config, "spatial_merge_size", 2)
        bias = config.get("multimodal_projector_bias") is True
        linears = h * text_hidden + text_hidden * text_hidden + (2 * text_hidden if bias else 0)
        return h + merge * merge * h * h + linears
    return h * text_hidden + text_hidden + text_hidden * text_hidden + text_hidden  # LLaVA's two layers


def vision_params(config: Mapping[str, Any], text_hidden: int) -> VisionEstimate | None:
    """The encoder and projector of `config["vision_config"]`, or None when the config has none."""
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping):
        return None
    kind = vision.get("model_type")
    if kind == "siglip_vision_model":
        encoder, exact = siglip_params(vision), True
    elif kind == "pixtral":
        encoder, exact = pixtral_params(vision), True
    else:
        encoder, exact = generic_vit_params(vision), False
    return VisionEstimate(params=encoder + projector_params(config, vision, text_hidden), exact=exact)
