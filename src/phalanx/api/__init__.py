"""The Phalanx API: ModelServing and ModelDeployment models, defaults and validation."""

from phalanx.api.errors import FieldError, SpecError
from phalanx.api.load import Loaded, Resource, load_text, parse_resource
from phalanx.api.modeldeployment import ModelDeployment
from phalanx.api.modelserving import ModelServing

__all__ = [
    "FieldError",
    "Loaded",
    "ModelDeployment",
    "ModelServing",
    "Resource",
    "SpecError",
    "load_text",
    "parse_resource",
]
