"""Engine recipes: from a plan to the launch commands, env, ports and probes of each pod."""

from collections.abc import Callable

from phalanx.engines import sglang, sim, vllm
from phalanx.engines.recipe import EngineInputs, RoleRecipe

Recipe = Callable[..., RoleRecipe]

RECIPES: dict[str, Recipe] = {"vllm": vllm.recipe, "sglang": sglang.recipe, "sim": sim.recipe}
DEFAULT_IMAGES: dict[str, str] = {
    "vllm": vllm.DEFAULT_IMAGE,
    "sglang": sglang.DEFAULT_IMAGE,
    "sim": sim.DEFAULT_IMAGE,
}

__all__ = ["DEFAULT_IMAGES", "RECIPES", "EngineInputs", "RoleRecipe"]
