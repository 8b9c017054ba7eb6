"""The models Phalanx can plan for (`dense.py`, `moe.py`), and how they are looked up.

Models are looked up by catalog name, by Hugging Face id, by the last part of that id, or by an alias
(KAITO's preset names), all case-insensitively; an unknown name raises `UnknownModelError` (a KeyError)
carrying close names.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from phalanx.planner.catalog.dense import DENSE_MODELS
from phalanx.planner.catalog.moe import MOE_MODELS
from phalanx.planner.catalog.names import UnknownNameError, close_names, normalise
from phalanx.planner.types import ModelArchitecture

MODELS: Final[tuple[ModelArchitecture, ...]] = (*DENSE_MODELS, *MOE_MODELS)

# Other names of catalog models: KAITO's preset names where they are neither our name nor the
# Hugging Face id (KAITO resolves its legacy names to these repositories).
MODEL_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "gemma-3-4b-instruct": "gemma-3-4b-it",
        "gemma-3-27b-instruct": "gemma-3-27b-it",
    }
)


def _index(models: tuple[ModelArchitecture, ...]) -> Mapping[str, ModelArchitecture]:
    index: dict[str, ModelArchitecture] = {}
    for model in models:
        for key in (model.name, model.hf_id, model.hf_id.rsplit("/", 1)[-1]):
            index.setdefault(normalise(key), model)
    for alias, name in MODEL_ALIASES.items():
        index.setdefault(normalise(alias), index[normalise(name)])
    return MappingProxyType(index)


_BY_KEY: Final = _index(MODELS)


class UnknownModelError(UnknownNameError):
    """A model name that is neither a catalog name nor a known Hugging Face id."""


def model_names() -> tuple[str, ...]:
    """The catalog names, in catalog order."""
    return tuple(model.name for model in MODELS)


def find_model(name: str) -> ModelArchitecture | None:
    """The model called `name` (catalog name or Hugging Face id, any case), or None."""
    return _BY_KEY.get(normalise(name))


def suggest_models(name: str) -> list[str]:
    """Catalog names close to `name`, best first, for "did you mean" messages."""
    return close_names(name, {key: model.name for key, model in _BY_KEY.items()})


def get_model(name: str) -> ModelArchitecture:
    """The model called `name`; raises UnknownModelError with close names when there is none."""
    model = find_model(name)
    if model is None:
        raise UnknownModelError("model", name, suggest_models(name), model_names())
    return model
